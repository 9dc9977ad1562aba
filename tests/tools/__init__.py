"""Tests of r1v4_nb/tools/, one file per module (test_<module>.py)."""

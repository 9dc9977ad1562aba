"""Tests of r1v4_nb/world/, one file per module (test_<module>.py)."""

"""Tests of r1v4_nb/data/, one file per module (test_<module>.py)."""

"""Tests of r1v4_nb/models/, one file per module (test_<module>.py)."""

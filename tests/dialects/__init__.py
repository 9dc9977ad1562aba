"""Tests of r1v4_nb/dialects/, one file per module (test_<module>.py)."""

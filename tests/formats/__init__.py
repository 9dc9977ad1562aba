"""Tests of r1v4_nb/formats/, one file per module (test_<module>.py)."""

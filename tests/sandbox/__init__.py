"""Tests of r1v4_nb/sandbox/, one file per module (test_<module>.py)."""

"""Tests of r1v4_nb/train/, one file per module (test_<module>.py)."""

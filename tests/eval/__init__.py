"""Tests of r1v4_nb/eval/, one file per module (test_<module>.py)."""

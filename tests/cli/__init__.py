"""Tests of r1v4_nb/cli/, one file per module (test_<module>.py)."""

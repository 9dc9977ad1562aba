"""Tests of r1v4_nb/ui/, one file per module (test_<module>.py)."""

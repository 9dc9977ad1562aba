"""Tests of r1v4_nb/tools/backends/, one file per module (test_<module>.py)."""

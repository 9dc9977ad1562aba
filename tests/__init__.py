"""The test suite, laid out as a mirror of the package: the tests of `r1v4_nb/<path>/<module>.py` are in
`tests/<path>/test_<module>.py` (see docs/testing.md). Every folder is a package, so two modules with the
same name in different packages (`data/filters.py`, `train/filters.py`) can each have a `test_filters.py`,
and the shared helpers import as `tests.support.<name>`."""

"""The secured server of tests/security (its world of patients, personnel and tokens), for
the REST tests that need a caller: ``Patient/$access-log``."""

from tests.security.conftest import secured  # noqa: F401  (the fixture, for tests/rest)

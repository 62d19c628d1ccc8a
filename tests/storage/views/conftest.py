"""The SQL on FHIR v2 suite's counts per engine, printed at the end of every run."""

from __future__ import annotations

import shutil
from collections import defaultdict

import pytest

from tests.debian import install

JAVA_PACKAGE = "openjdk-17-jre-headless"  # pyspark 4 runs on Java 17 or newer

SUITE_TEST = "test_official_suite.py::test_official_case["
counts: dict[str, dict[str, int]] = defaultdict(lambda: {"passed": 0, "total": 0})


def pytest_runtest_logreport(report):
    if SUITE_TEST not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        engine = report.nodeid.split(SUITE_TEST, 1)[1].split(":", 1)[0]
        counts[engine]["total"] += 1
        if report.when == "call" and report.passed and not hasattr(report, "wasxfail"):
            counts[engine]["passed"] += 1


def pytest_terminal_summary(terminalreporter):
    if not counts:
        return
    parts = [
        f"{engine} {c['passed']} passed / {c['total']}" for engine, c in sorted(counts.items())
    ]
    terminalreporter.write_line("SQL-on-FHIR v2 suite: " + ", ".join(parts))


@pytest.fixture(autouse=True, scope="session")
def postgres_engine_server():
    """The PostgreSQL view engine runs on the test server (tests/conftest.py's PG_DSN)."""
    from enjournal.storage.views import ENGINES
    from tests.conftest import PG_DSN

    engine = ENGINES.get("postgres")
    if engine is not None:
        engine.configure(PG_DSN)


def pytest_runtest_setup(item):
    """Spark needs a Java runtime: Debian's, installed now if missing (a failure, not a
    skip, if it cannot be)."""
    if "spark" not in item.nodeid:
        return
    problems = install(JAVA_PACKAGE, lambda: shutil.which("java") is not None)
    if shutil.which("java") is None:
        pytest.fail(
            f"Spark needs Java and `apt-get install -y {JAVA_PACKAGE}` did not install it:\n"
            + "\n".join(problems),
            pytrace=False,
        )


def pytest_sessionfinish(session):
    from enjournal.storage.views import ENGINES

    stop = getattr(ENGINES.get("spark"), "stop", None)
    if stop is not None:
        stop()

"""The helsenorge portal in a real browser: Debian's chromium driven by Playwright, against a
real ``enjournal`` server with the demo population and the embedded login provider.

- ``chromium_path``: /usr/bin/chromium, installed with apt-get when missing (never
  ``playwright install``, which downloads a browser); a failure, not a skip, if it cannot be.
- pytest-playwright's ``context``/``page``/``new_context`` fixtures, on one headless browser
  launched through ``executable_path``; every test gets a new context (its own cookies).
  The browser and Playwright live for this package only (see ``playwright`` below).
- ``portal``: one server for these tests, loaded as ``enjournal demo --no-serve`` loads it
  and served with ``serve_environment`` (security on, the embedded provider).
- ``signed_in(who)``: a page logged in as a demo citizen, the login made once per user.
- ``api``: the FHIR API as a demo user (``enjournal token --as gp``), e.g. for a GP's look.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.debian import install
from tests.server.conftest import ROOT, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
PATIENTS = 40  # enough for the demo users and strangers, quick to load


# ---- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def chromium_path() -> str:
    """Debian's chromium, installed now if missing; the session fails if it cannot be."""
    if not CHROMIUM.exists():
        problems = _install_chromium()
        if not CHROMIUM.exists():
            pytest.fail(
                f"{CHROMIUM} is missing and `apt-get install -y chromium` did not install it "
                "(the browser tests need Debian's chromium; never `playwright install`):\n"
                + "\n".join(problems),
                pytrace=False,
            )
    return str(CHROMIUM)


def _install_chromium() -> list[str]:
    return install("chromium", CHROMIUM.exists)


# pytest-playwright's Playwright and browser live for the whole session.  Its sync API
# marks an event loop as running between calls, so every asyncio test after the first
# browser test would fail ("Runner.run() cannot be called from a running event loop"):
# here they live for this package only, and stop before the next package's tests.


@pytest.fixture(scope="package")
def playwright():
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser_type(playwright, browser_name: str):
    return getattr(playwright, browser_name)


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict, browser_type):
    return lambda **kwargs: browser_type.launch(**{**browser_type_launch_args, **kwargs})


@pytest.fixture(scope="package")
def browser(launch_browser):
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_type_launch_args(chromium_path: str) -> dict:
    """Debian's chromium, headless (pytest-playwright's own options are replaced)."""
    return {"executable_path": chromium_path, "headless": True, "args": ["--no-sandbox"]}


@pytest.fixture(scope="package")
def browser_context_args(portal: str) -> dict:
    """Every new context: the portal's server as base URL, a plain desktop window."""
    return {"base_url": portal, "viewport": {"width": 1280, "height": 900}, "locale": "nb-NO"}


TIMEOUT_MS = 10_000  # a page of the portal answers in well under a second


@pytest.fixture
def context(new_context):
    """pytest-playwright's context, failing after 10 s instead of 30 s."""
    context = new_context()
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="package")
def login_states(browser, browser_context_args) -> dict:
    """Cached logins, ``(who, lang)`` -> storage state, made on first use (a login costs a
    second; most tests are about what comes after it)."""
    return {}


@pytest.fixture
def signed_in(new_context, login_states, browser, browser_context_args):
    """``signed_in(who, path="/", lang="nb")``: a page in a new context, logged in as
    ``who`` (one session per user and language, shared by the tests that ask for it), at
    the portal's ``path`` (None: a blank page).  A test that changes the session itself
    (whom it acts for, the language, logging out) logs in on its own instead."""
    from .helpers import choose_language, login

    def open_page(who: str, path: str | None = "/", lang: str = "nb"):
        if (who, lang) not in login_states:
            fresh = browser.new_context(**browser_context_args)
            fresh.set_default_timeout(TIMEOUT_MS)
            page = fresh.new_page()
            login(page, who)
            if lang != "nb":
                choose_language(page, lang)
            login_states[who, lang] = fresh.storage_state()
            fresh.close()
        context = new_context(storage_state=login_states[who, lang])
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        if path is not None:
            page.goto(f"/helsenorge{path}")
        return page

    return open_page


# ---- the server -----------------------------------------------------------------------------


class DemoServer(ServerProcess):
    """``enjournal serve`` with the environment ``enjournal demo`` serves with."""

    def __init__(self, data: Path):
        super().__init__(f"sqlite:///{data / 'enjournal.sqlite'}", data / "server.log")
        self.data = data

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> DemoServer:
        from enjournal.demo.command import ready_for_tokens, serve_environment

        env = {
            **os.environ,
            **serve_environment(self.data, "127.0.0.1", self.port),
            "ENJOURNAL_AUTH": "on",
            "ENJOURNAL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        ready_for_tokens(self.data, self.base)
        command = [sys.executable, "-m", "enjournal.cli", "serve", "--database", self.database]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_healthy(timeout)
        return self


def load_demo(data: Path, patients: int = PATIENTS) -> None:
    """The population, drug catalogue and portal world, as ``enjournal demo --no-serve``."""
    command = [sys.executable, "-m", "enjournal.cli", "demo", "--data", str(data)]
    command += ["--patients", str(patients), "--no-serve"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the demo did not load:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


@pytest.fixture(scope="package")
def demo_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("helsenorge-demo")
    load_demo(data)
    return data


def running(server: DemoServer) -> Iterator[DemoServer]:
    """``server`` for a fixture to yield, stopped when the fixture ends (the follow-up
    centre's conftest uses it too)."""
    try:
        yield server
    finally:
        server.terminate(10)
        server.kill()


@pytest.fixture(scope="package")
def demo_server(demo_data: Path):
    yield from running(DemoServer(demo_data).start(timeout=60))


@pytest.fixture(scope="package")
def portal(demo_server: DemoServer) -> str:
    """The server's base URL (the portal is under /helsenorge)."""
    return demo_server.base


def demo_token(data: Path, base: str, who: str) -> str:
    """``enjournal token --as <who>`` for the demo served from ``data`` at ``base``."""
    command = [sys.executable, "-m", "enjournal.cli", "token", "--data", str(data)]
    command += ["--public-url", base, "--as", who]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class DemoApi:
    """The FHIR API of the demo server as a demo user holding a token from ``enjournal
    token`` (one per user for the session)."""

    def __init__(self, server: DemoServer):
        self.server = server
        self._tokens: dict[str, str] = {}

    def token(self, who: str) -> str:
        if who not in self._tokens:
            self._tokens[who] = demo_token(self.server.data, self.server.base, who)
        return self._tokens[who]

    def get(self, who: str, path: str, **headers: str | bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(who)}", **headers}
        return httpx.get(f"{self.server.base}/fhir/{path}", headers=headers, timeout=30)

    def post(self, who: str, path: str, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(who)}"}
        return httpx.post(f"{self.server.base}/fhir/{path}", json=body, headers=headers, timeout=30)

    def own_patient(self, who: str) -> dict:
        """The citizen ``who``'s own Patient (a citizen's search finds only their own)."""
        answer = self.get(who, "Patient")
        assert answer.status_code == 200, answer.text
        return answer.json()["entry"][0]["resource"]


@pytest.fixture(scope="package")
def api(demo_server: DemoServer) -> DemoApi:
    return DemoApi(demo_server)

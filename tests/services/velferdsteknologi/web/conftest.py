"""The follow-up centre in a real browser, on the portal's browser machinery: Debian's
chromium through Playwright (the fixtures of tests/services/helsenorge/browser/conftest.py,
imported, not copied) against a real ``enjournal`` server loaded as ``enjournal demo
--no-serve`` loads it (the home-care world and a week of simulated readings included).

The server runs without the simulated devices' live job (``ENJOURNAL_DEMO_DEVICES`` off), so
the only new reading is the test's own; the follow-up jobs (escalation, silent devices) run
as in the demo.  ``centre`` is its base URL; ``staff_page(path)`` a page logged in as the
demo's home-care nurse (``homecare``), the login made once; ``ingest`` sends a reading
through the hub's ingest in a process of its own (the server is another process).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from enjournal.demo.command import serve_environment
from tests.server.conftest import ROOT
from tests.services.helsenorge.browser import conftest as portal
from tests.services.helsenorge.browser.conftest import TIMEOUT_MS, DemoApi, DemoServer, load_demo

# The portal's browser fixtures, for this package: Debian's chromium, one headless browser,
# a new context per test (package scope, as there: see its note on the event loop).
chromium_path = portal.chromium_path
playwright = portal.playwright
browser_type = portal.browser_type
launch_browser = portal.launch_browser
browser = portal.browser
browser_type_launch_args = portal.browser_type_launch_args
context = portal.context

CENTRE = "/oppfolging"
NURSE = "homecare"
# Enough of the population for the demo's six followed patients (born before 1955).
PATIENTS = 120


def quiet_environment(data: Path, host: str, port: int) -> dict[str, str]:
    """The demo's serving environment without the simulated devices' live readings."""
    return {**serve_environment(data, host, port), "ENJOURNAL_DEMO_DEVICES": "off"}


@pytest.fixture(scope="package")
def demo_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("oppfolging-demo")
    load_demo(data, PATIENTS)
    return data


@pytest.fixture(scope="package")
def demo_server(demo_data: Path):
    from enjournal.demo import command

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "serve_environment", quiet_environment)
        server = DemoServer(demo_data).start(timeout=60)
    yield from portal.running(server)


@pytest.fixture(scope="package")
def centre(demo_server: DemoServer) -> str:
    return demo_server.base


@pytest.fixture(scope="package")
def api(demo_server: DemoServer) -> DemoApi:
    return DemoApi(demo_server)


@pytest.fixture(scope="package")
def browser_context_args(centre: str) -> dict:
    return {"base_url": centre, "viewport": {"width": 1400, "height": 900}, "locale": "nb-NO"}


def login(page: Page, who: str = NURSE) -> None:
    """Log in through the embedded provider's chooser as the demo user ``who``."""
    page.goto(f"{CENTRE}/login")
    page.locator(f'button[name="login_hint"][value="{who}"]').click()
    page.wait_for_url(re.compile(rf"{CENTRE}/$"))
    expect(page.locator("form[action$='/logout']")).to_have_count(1)


@pytest.fixture(scope="package")
def nurse_state(browser, browser_context_args) -> dict:
    fresh = browser.new_context(**browser_context_args)
    fresh.set_default_timeout(TIMEOUT_MS)
    login(fresh.new_page())
    state = fresh.storage_state()
    fresh.close()
    return state


@pytest.fixture
def staff_page(new_context, nurse_state):
    """``staff_page(path="/", lang=None)``: a page logged in as the home-care nurse."""

    def open_page(path: str | None = "/"):
        context = new_context(storage_state=nurse_state)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        if path is not None:
            page.goto(f"{CENTRE}{path}")
        return page

    return open_page


@pytest.fixture(scope="package")
def ingest(demo_data: Path):
    """``ingest(device, fnr, kind, value)``: one reading through the hub's ingest (and its
    follow-up) in a process of its own; the ids of the patient's open alerts after it."""

    def send(device: str, fnr: str, kind: str, value: float) -> list[dict]:
        database = f"sqlite:///{demo_data / 'enjournal.sqlite'}"
        command = [sys.executable, "-m", "tests.services.velferdsteknologi.web.send_reading"]
        command += [database, device, fnr, kind, str(value)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return send

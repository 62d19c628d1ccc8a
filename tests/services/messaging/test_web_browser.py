"""The message centre in headless Chromium (Debian's /usr/bin/chromium through Playwright's
``executable_path``, never ``playwright install``): the GP office's doctor logs in through
the embedded provider's chooser, opens the inbox, opens a discharge summary, sends an OK
receipt, and axe-core finds no WCAG 2.1 A/AA violation on any page; and by the keyboard
alone, a dialogue message is opened, marked read and rejected with an 8221 code.

The server is test_web.py's secured platform (world.py's parties, SQLite) served by uvicorn
in a thread of its own with its own event loop; Playwright's sync API runs in the test's
thread.  Playwright lives for this module only, so the asyncio tests after it are untouched
(see the note in tests/services/helsenorge/browser/conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Page, expect, sync_playwright

from enjournal.bootstrap import close_platform
from enjournal.server.app import create_app
from enjournal.services.messaging.hub import hub_of
from enjournal.services.messaging.web import content
from tests.debian import install
from tests.services.helsenorge.browser.helpers import (
    axe_check,
    field,
    focused,
    press_enter_and_wait,
    tab_to,
)
from tests.services.messaging import world
from tests.services.messaging.test_web import CENTRE, api, secured_platform, send

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CentreServer:
    """The centre on uvicorn in a thread: ``start()`` returns once it listens, with the ids
    of the messages the hospital sent the GP office (``messages``: type -> id)."""

    def __init__(self, database: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = database
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.messages: dict[str, str] = {}
        self.server: uvicorn.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.platform = self.provider = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CentreServer:
        self.thread.start()
        if not self.ready.wait(60) or self.failed is not None:
            raise RuntimeError(f"the centre did not start: {self.failed!r}")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)

    def status(self, who: str, message_id: str) -> content.Summary:
        """The hub settled, then ``$message-status`` as ``who`` sees it (in the server's
        loop, from the test's thread)."""

        async def look() -> dict:
            await hub_of(self.platform).settle()
            client = api(self.platform, self.provider, who)
            return await client.get("$message-status", [("id", message_id)])

        assert self.loop is not None
        answer = asyncio.run_coroutine_threadsafe(look(), self.loop).result(30)
        return content.status(answer)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test's thread
            self.failed = error
            self.ready.set()

    async def _serve(self) -> None:
        url = f"sqlite:///{self.database}"
        platform, provider, security = await secured_platform(url, self.base)
        self.loop, self.platform, self.provider = asyncio.get_running_loop(), platform, provider
        for type_, resource in (
            ("EPIKRISE", world.discharge_summary()),
            ("DIALOG_FORESPORSEL", world.dialogue()),
        ):
            bundle = world.message(type_, world.HOSPITAL_HER, world.GP_HER, [resource])
            self.messages[type_] = await send(platform, provider, "hdoc", bundle)
        await hub_of(platform).settle()
        app = create_app(platform.settings, platform=platform)
        # lifespan off: the platform is open and its security started (with the test's users)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off")
        self.server = uvicorn.Server(config)
        serving = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        self.ready.set()
        await serving
        await hub_of(platform).close()
        await security.stop()
        await close_platform(platform)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = CentreServer(tmp_path_factory.mktemp("meldinger") / "centre.sqlite").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, installed when missing; a failure, not a skip, without it."""
    problems = install("chromium", CHROMIUM.exists)
    if not CHROMIUM.exists():
        pytest.fail("the browser test needs Debian's chromium:\n" + "\n".join(problems))
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
    )
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def centre_page(chromium, server):
    context = chromium.new_context(
        base_url=server.base, viewport={"width": 1280, "height": 900}, locale="nb-NO"
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def test_the_gp_reads_a_discharge_summary_and_answers_it_ok(centre_page: Page, server):
    page = centre_page
    page.goto(f"{CENTRE}/")
    expect(page.locator("a[href$='/login']")).to_have_count(1)
    axe_check(page)
    page.locator("a[href$='/login']").click()
    page.locator('button[name="login_hint"][value="gp"]').click()
    page.wait_for_url(re.compile(rf"{CENTRE}/$"))
    expect(page.locator("h1")).to_have_text("Innboks")
    row = page.locator(f"#message-{server.messages['EPIKRISE']}")
    expect(row).to_contain_text("Epikrise")
    expect(row).to_contain_text("Ulest")
    axe_check(page)
    row.get_by_role("link", name="Epikrise").click()
    expect(page.locator("h1")).to_contain_text("Epikrise")
    expect(page.locator("main")).to_contain_text("Utskrevet i god form")
    axe_check(page)
    page.get_by_label("OK", exact=True).check()
    page.get_by_role("button", name="Send kvitteringen").click()
    expect(page.locator("main .flash")).to_have_text("Kvitteringen er sendt.")
    axe_check(page)
    page.get_by_role("link", name="Sendt", exact=True).click()
    expect(page.locator("h1")).to_have_text("Sendt")
    axe_check(page)
    assert server.status("hdoc", server.messages["EPIKRISE"]).receipt == "1"


def test_by_keyboard_alone_a_dialogue_message_is_read_and_rejected(centre_page: Page, server):
    page = centre_page
    message_id = server.messages["DIALOG_FORESPORSEL"]
    page.goto(f"{CENTRE}/")
    tab_to(page, lambda f: f["tag"] == "a" and f["href"].endswith("/login"))
    press_enter_and_wait(page)  # the provider's chooser
    tab_to(page, lambda f: f["tag"] == "button" and f["value"] == "gp")
    with page.expect_navigation(url=re.compile(rf"{CENTRE}/$")):
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "a" and f["href"] == f"{CENTRE}/melding/{message_id}")
    press_enter_and_wait(page)
    expect(page.locator("main")).to_contain_text("Har pasienten fått oppfølging?")
    tab_to(page, lambda f: f["tag"] == "button" and f["form"].endswith("/lest"))
    press_enter_and_wait(page)
    expect(page.locator("main .flash")).to_have_text("Meldingen er merket som lest.")
    tab_to(page, field("status-ok"))
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert focused(page)["id"] == "status-rejected"
    tab_to(page, field("error-code"))
    page.keyboard.type("E35")
    expect(page.locator("#error-code")).to_have_value("E35")
    tab_to(page, field("error-text"))
    page.keyboard.type("Ukjent pasient hos oss")
    tab_to(page, lambda f: f["tag"] == "button" and f["form"].endswith("/kvittering"))
    press_enter_and_wait(page)
    expect(page.locator("main .flash")).to_have_text("Kvitteringen er sendt.")
    axe_check(page)
    sent = server.status("hdoc", message_id)  # as the hospital, once the receipt is back
    assert (sent.state, sent.receipt) == ("read", "2")
    assert sent.errors == [("E35", "Ukjent pasient hos oss")]

"""The message centre's pages (enjournal/services/messaging/web) on a secured app, on SQLite
and PostgreSQL: messages sent between world.py's parties through ``$process-message`` and
settled by the hub; the GP office's doctor logs in through the embedded provider's code flow,
reads the inbox, opens a message (its content as text, never the message's HTML), marks it
read and answers it with a receipt that reaches the sender's sent list; a pharmacist (another
organisation) sees nothing of theirs; the catalogues cover every message shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from babel.messages.pofile import read_po

from enjournal.bootstrap import close_platform, compose, open_platform
from enjournal.security.keys import generate
from enjournal.security.provider import DemoUser, Provider, ProviderConfig
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.services.messaging import rules
from enjournal.services.messaging.hub import hub_of
from enjournal.services.messaging.web import content, routes
from enjournal.services.messaging.web.centre import CONFIG
from enjournal.services.messaging.xml import to_xml
from enjournal.settings import Settings
from enjournal.web import FhirClient
from enjournal.web.site import environment
from tests.services.helsenorge.test_catalogues import (
    SHARED,
    extracted,
    problems,
    templates,
    visible,
)
from tests.services.messaging import world

pytestmark = pytest.mark.backends("sqlite", "postgres")

CENTRE = "/meldinger"
COOKIE = CONFIG.cookie
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SCOPES = "openid fhirUser user/*.cruds"
USERS = {
    "gp": DemoUser(
        "gp", "personnel", "Gina Lege", hpr="1000001", profession="LE",
        org_nr=world.GP_ORG, her_id=world.GP_HER,
    ),
    "hdoc": DemoUser(
        "hdoc", "personnel", "Hanne Overlege", hpr="1000003", profession="LE",
        org_nr=world.HOSPITAL_ORG, her_id=world.HOSPITAL_HER,
    ),
    "farm": DemoUser(
        "farm", "personnel", "Frida Farmasøyt", hpr="1000004", profession="FA",
        org_nr=world.PHARMACY_ORG, her_id=world.PHARMACY_HER,
    ),
    "nobody": DemoUser("nobody", "personnel", "Uten Virksomhet", hpr="1000009", profession="LE"),
}  # fmt: skip


async def secured_platform(store_url: str, public_url: str = "http://test"):
    """A serving platform with the embedded provider (``USERS``), world.py loaded and the
    centre's routes; (platform, provider, security)."""
    settings = Settings(
        database_url=store_url, auth=True, terminology_check=False, jobs=False,
        public_url=public_url,
    )  # fmt: skip
    provider = Provider(ProviderConfig(issuer=f"{public_url}/oidc", key=generate()))
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]), provider=provider,
        limiter=MemoryLimiter(),
    )  # fmt: skip
    platform = compose(settings, security=security, serving=True)
    await open_platform(platform)
    await security.start(platform.store)
    provider.users = dict(USERS)  # start() offers the demo population's users
    await world.load(platform.store)
    if not any(getattr(r, "path", "") == CENTRE for r in platform.routes):
        platform.routes.extend(routes(platform))  # unless messaging's register mounted them
    return platform, provider, security


def api(platform, provider, who: str) -> FhirClient:
    """The FHIR API in process as the user ``who``."""
    return FhirClient(platform, provider.issue_token(USERS[who], scopes=SCOPES))


async def send(platform, provider, who: str, bundle: dict) -> str:
    await api(platform, provider, who).post("$process-message", bundle)
    return bundle["entry"][0]["resource"]["id"]


class Browser:
    """The centre as a browser uses it: the code flow at the embedded provider, the
    session cookie kept by hand (httpx sends no Secure cookie over http)."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.cookie: str | None = None

    async def get(self, path: str) -> httpx.Response:
        return await self._send("GET", path)

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True):
        form = dict(data or {})
        if csrf:
            page = await self.get(f"{CENTRE}/")
            form["csrf"] = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        return await self._send("POST", path, data=form)

    async def login(self, who: str) -> httpx.Response:
        start = await self.get(f"{CENTRE}/login")
        assert start.status_code == 303, start.text
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
        chosen = await self.http.get("/oidc/authorize", params={**query, "login_hint": who})
        back = urlsplit(chosen.headers["location"])
        return await self.get(f"{back.path}?{back.query}")

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            if name == COOKIE:
                self.cookie = rest.split(";", 1)[0].strip('"') or None
        return response


class Centre:
    def __init__(self, platform, provider, http):
        self.platform, self.provider, self.http = platform, provider, http

    async def as_user(self, who: str) -> Browser:
        browser = Browser(self.http)
        done = await browser.login(who)
        assert done.status_code == 303 and done.headers["location"] == f"{CENTRE}/", done.text
        return browser

    async def send(self, who: str, bundle: dict) -> str:
        return await send(self.platform, self.provider, who, bundle)

    async def settle(self) -> None:
        await hub_of(self.platform).settle()


@pytest.fixture
async def centre(store_url):
    platform, provider, security = await secured_platform(store_url)
    app = create_app(platform.settings, platform=platform)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Centre(platform, provider, http)
    finally:
        await hub_of(platform).close()
        await security.stop()
        await close_platform(platform)


def epikrise(text: str = "Utskrevet i god form") -> dict:
    return world.message(
        "EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary(text)]
    )


def rows(page: str) -> list[str]:
    """The ids of the messages a list shows, in order."""
    return re.findall(r'<tr id="message-([^"]+)"', page)


# --- the inbox -------------------------------------------------------------------------------


async def test_the_inbox_lists_received_messages_unread_first(centre):
    first = await centre.send("hdoc", epikrise())
    question = world.message(
        "DIALOG_FORESPORSEL", world.HOSPITAL_HER, world.GP_HER, [world.dialogue()]
    )
    second = await centre.send("hdoc", question)
    await centre.settle()
    gp = await centre.as_user("gp")
    await api(centre.platform, centre.provider, "gp").operation("$message-read", id=second)
    page = await gp.get(f"{CENTRE}/")
    assert page.status_code == 200
    assert rows(page.text) == [first, second]  # the unread before the read
    assert "Epikrise" in page.text and "Dialogmelding: forespørsel" in page.text
    assert "Sykehuset Test" in page.text and world.HOSPITAL_HER in page.text
    assert "Ulest" in page.text and "Lest " in page.text
    unread = await gp.get(f"{CENTRE}/?vis=uleste")
    assert rows(unread.text) == [first]


async def test_the_inbox_shows_the_received_time_in_norwegian_format(centre):
    await centre.send("hdoc", epikrise())
    await centre.settle()
    page = await (await centre.as_user("gp")).get(f"{CENTRE}/")
    today = datetime.now(UTC).astimezone(content_zone()).strftime("%d.%m.%Y")
    assert re.search(rf"{re.escape(today)} kl\. \d\d:\d\d", page.text), page.text


def content_zone():
    from enjournal.web.i18n import OSLO

    return OSLO


# --- one message -----------------------------------------------------------------------------


async def test_a_discharge_summary_is_shown_as_text_never_as_its_html(centre):
    evil = '<b>Fet</b> tekst<script>alert("x")</script><p>Kontroll om 3 uker</p>'
    summary = world.discharge_summary(evil)
    bundle = world.message("EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [summary])
    message_id = await centre.send("hdoc", bundle)
    await centre.settle()
    page = await (await centre.as_user("gp")).get(f"{CENTRE}/melding/{message_id}")
    assert page.status_code == 200
    assert "Forløp" in page.text and "Fet tekst" in page.text and "Kontroll om 3 uker" in page.text
    assert "<b>Fet" not in page.text and "<script>alert" not in page.text
    assert "alert(" not in page.text  # a script's text is left out, not shown
    assert summary["author"][0]["display"] in page.text and world.KARI in page.text
    assert "03.12.2026" in page.text  # the summary's date, in Norwegian format


async def test_a_dialogue_message_shows_its_text_and_lists_its_attachments(centre):
    dialogue = world.dialogue("Har pasienten <i>fått</i> oppfølging?")
    dialogue["payload"].append(
        {"contentAttachment": {"contentType": "application/pdf", "title": "Svar.pdf", "size": 2048}}
    )
    bundle = world.message("DIALOG_FORESPORSEL", world.HOSPITAL_HER, world.GP_HER, [dialogue])
    message_id = await centre.send("hdoc", bundle)
    await centre.settle()
    page = await (await centre.as_user("gp")).get(f"{CENTRE}/melding/{message_id}")
    assert "Har pasienten &lt;i&gt;fått&lt;/i&gt; oppfølging?" in page.text
    assert (
        "Svar.pdf" in page.text and "application/pdf" in page.text and "2\xa0048 byte" in page.text
    )


async def post_xml(centre, who: str, bundle: dict, body: bytes | None = None) -> str:
    """Send ``bundle`` as KITH XML (``body``: other bytes instead), as the EDI facade does."""
    header = bundle["entry"][0]["resource"]
    query = {
        "sender": rules.her_of(header["sender"]),
        "receiver": rules.her_of(header["destination"][0]["receiver"]),
        "type": header["eventCoding"]["code"],
        "id": header["id"],
    }
    token = centre.provider.issue_token(USERS[who], scopes=SCOPES)
    sent = await centre.http.post(
        "/fhir/$process-message",
        params=query,
        content=to_xml(bundle) if body is None else body,
        headers={"content-type": "application/xml", "authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 202, sent.text
    return header["id"]


async def test_a_message_in_xml_is_read_and_shown_as_text(centre):
    text = "Svar på <b>blodprøver</b>?"
    bundle = world.message(
        "DIALOG_FORESPORSEL", world.HOSPITAL_HER, world.GP_HER, [world.dialogue(text)]
    )
    message_id = await post_xml(centre, "hdoc", bundle)
    unreadable = await post_xml(
        centre, "hdoc", world.message("DIALOG_NOTAT", world.HOSPITAL_HER, world.GP_HER, []),
        body=b"<MsgHead><script>alert(1)</script></MsgHead>",
    )  # fmt: skip
    await centre.settle()
    gp = await centre.as_user("gp")
    page = await gp.get(f"{CENTRE}/melding/{message_id}")
    assert page.status_code == 200
    assert "Svar på &lt;b&gt;blodprøver&lt;/b&gt;?" in page.text and world.KARI in page.text
    raw = await gp.get(f"{CENTRE}/melding/{unreadable}")
    assert "som ikke kunne leses" in raw.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw.text and "<script>" not in raw.text


async def test_a_referral_shows_what_is_asked_for_to_its_receiver(centre):
    bundle = world.message(
        "HENVIS", world.GP_HER, world.CLINIC_HER, [world.referral("Vurdering av hofte")]
    )
    message_id = await centre.send("gp", bundle)
    await centre.settle()
    hdoc = await centre.as_user("hdoc")  # the clinic belongs to the hospital's organisation
    page = await hdoc.get(f"{CENTRE}/melding/{message_id}")
    assert page.status_code == 200
    assert "Henvisning" in page.text and "Vurdering av hofte" in page.text
    assert 'name="status"' in page.text  # the clinic answers it by a person
    inbox = await hdoc.get(f"{CENTRE}/")
    assert message_id in rows(inbox.text) and "Poliklinikk Test" in inbox.text


async def test_mark_read_then_an_ok_receipt_reaches_the_sender(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    gp = await centre.as_user("gp")
    read = await gp.post(f"{CENTRE}/melding/{message_id}/lest")
    assert read.status_code == 303
    page = await gp.get(f"{CENTRE}/melding/{message_id}")
    assert "Meldingen er merket som lest." in page.text and "/lest" not in page.text
    answered = await gp.post(f"{CENTRE}/melding/{message_id}/kvittering", {"status": "1"})
    assert answered.status_code == 303
    assert "Kvitteringen er sendt." in (await gp.get(f"{CENTRE}/melding/{message_id}")).text
    again = await gp.post(f"{CENTRE}/melding/{message_id}/kvittering", {"status": "1"})
    assert again.status_code == 303
    assert "allerede besvart" in (await gp.get(f"{CENTRE}/melding/{message_id}")).text
    await centre.settle()  # the receipt reaches the sender's ledger: answered, no form
    page = await gp.get(f"{CENTRE}/melding/{message_id}")
    assert 'class="tag receipt-1"' in page.text and 'name="status"' not in page.text
    sent = await (await centre.as_user("hdoc")).get(f"{CENTRE}/sendt")
    assert rows(sent.text) == [message_id]
    assert 'class="tag receipt-1"' in sent.text and "lest" in sent.text


async def test_a_rejection_names_its_8221_code_and_text_on_the_senders_list(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    gp = await centre.as_user("gp")
    form = {"status": "2", "code": "E35", "text": "Ukjent hos oss"}
    assert (await gp.post(f"{CENTRE}/melding/{message_id}/kvittering", form)).status_code == 303
    await centre.settle()
    sent = await (await centre.as_user("hdoc")).get(f"{CENTRE}/sendt")
    assert "Avvist" in sent.text and "E35" in sent.text and "Ukjent hos oss" in sent.text


async def test_a_receipt_that_is_not_ok_needs_a_code_and_sends_nothing_without(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    gp = await centre.as_user("gp")
    form = {"status": "3", "code": "", "text": "noe mangler"}
    assert (await gp.post(f"{CENTRE}/melding/{message_id}/kvittering", form)).status_code == 303
    page = await gp.get(f"{CENTRE}/melding/{message_id}")
    assert "En kvittering som ikke er OK" in page.text and 'name="status"' in page.text
    status = await api(centre.platform, centre.provider, "gp").get(
        "$message-status", [("id", message_id)]
    )
    assert content.status(status).receipt is None


async def test_sent_messages_show_their_state_and_the_overdue(centre):
    answered = await centre.send(
        "gp", world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    )  # the hospital's system answers automatically
    waiting = await centre.send(
        "gp", world.message("HENVIS", world.GP_HER, world.CLINIC_HER, [world.referral()])
    )  # the clinic answers by a person: not yet
    await centre.settle()
    gp = await centre.as_user("gp")
    sent = await gp.get(f"{CENTRE}/sendt")
    assert set(rows(sent.text)) == {answered, waiting}
    assert "levert" in sent.text and 'class="tag receipt-1"' in sent.text
    assert 'class="overdue"' not in sent.text and "Ingen kvittering: over fristen" not in sent.text
    later = datetime.now(UTC) + timedelta(
        seconds=centre.platform.settings.messaging_receipt_seconds + 60
    )
    centre.platform.clock = lambda: later
    sent = await gp.get(f"{CENTRE}/sendt")
    assert re.search(rf'<tr id="message-{waiting}" class="overdue">', sent.text)
    assert f'<tr id="message-{answered}">' in sent.text
    assert "Ingen kvittering: over fristen" in sent.text


# --- who sees what ---------------------------------------------------------------------------


async def test_another_organisation_sees_nothing_of_theirs(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    farm = await centre.as_user("farm")
    inbox = await farm.get(f"{CENTRE}/")
    assert rows(inbox.text) == [] and "Ingen meldinger mottatt." in inbox.text
    assert rows((await farm.get(f"{CENTRE}/sendt")).text) == []
    assert (await farm.get(f"{CENTRE}/melding/{message_id}")).status_code == 404
    refused = await farm.post(f"{CENTRE}/melding/{message_id}/kvittering", {"status": "1"})
    assert refused.status_code == 404
    refused = await farm.post(f"{CENTRE}/melding/{message_id}/lest")
    assert refused.status_code == 404
    status = await api(centre.platform, centre.provider, "hdoc").get(
        "$message-status", [("id", message_id)]
    )
    assert content.status(status).receipt is None and content.status(status).read is None


async def test_the_sender_may_see_but_not_answer_its_own_message(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    hdoc = await centre.as_user("hdoc")
    page = await hdoc.get(f"{CENTRE}/melding/{message_id}")
    assert page.status_code == 200 and 'name="status"' not in page.text
    assert (
        await hdoc.post(f"{CENTRE}/melding/{message_id}/kvittering", {"status": "1"})
    ).status_code == 404


async def test_a_form_without_its_csrf_token_is_refused(centre):
    message_id = await centre.send("hdoc", epikrise())
    await centre.settle()
    gp = await centre.as_user("gp")
    refused = await gp.post(f"{CENTRE}/melding/{message_id}/lest", csrf=False)
    assert refused.status_code == 403
    page = await gp.get(f"{CENTRE}/melding/{message_id}")
    assert "/lest" in page.text  # still unread


async def test_pages_need_a_login_and_an_organisation(centre):
    anonymous = Browser(centre.http)
    assert (await anonymous.get(f"{CENTRE}/sendt")).status_code == 303
    start = await anonymous.get(f"{CENTRE}/")
    assert start.status_code == 200 and f"{CENTRE}/login" in start.text
    refused = await Browser(centre.http).login("nobody")
    assert refused.status_code == 400 and "Innloggingen ble ikke fullført" in refused.text


@pytest.mark.parametrize(
    ("lang", "heading", "kind"),
    [("nn", "Innboks", "Epikrise"), ("en", "Inbox", "Discharge summary")],
)
async def test_the_inbox_in_nynorsk_and_english(centre, lang, heading, kind):
    await centre.send("hdoc", epikrise())
    await centre.settle()
    gp = await centre.as_user("gp")
    chosen = await gp.post(f"{CENTRE}/language", {"lang": lang, "back": f"{CENTRE}/"})
    assert chosen.status_code == 303
    page = await gp.get(f"{CENTRE}/")
    assert f'<html lang="{lang}">' in page.text
    assert f"<h1>{heading}</h1>" in page.text and kind in page.text


# --- content as text (no database) ----------------------------------------------------------


def test_xhtml_becomes_lines_of_text_without_markup_or_scripts():
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>Første &amp; <b>andre</b></p>'
        "<ul><li>en</li><li>to</li></ul><style>p{}</style><script>x()</script>slutt</div>"
    )
    assert content.text_of_xhtml(div) == "Første & andre\nen\nto\nslutt"


def test_an_odd_bundle_gives_what_can_be_read_and_says_what_is_wrong():
    assert content.content_of({"resourceType": "Bundle", "type": "collection"}).problems
    sections = [{"text": {"div": 7}}, {"code": {"coding": [{"code": "x"}]}}]
    resources = [
        {"resourceType": "Composition", "section": sections},
        {"resourceType": "Communication", "payload": [{"contentAttachment": {"size": "big"}}]},
    ]
    sparse = world.message("EPIKRISE", world.HOSPITAL_HER, world.GP_HER, resources, number=None)
    found = content.content_of(sparse)
    assert found.patient_id == "" and found.sections == []
    assert [(a.title, a.size) for a in found.attachments] == [("", None)]


def test_the_message_page_renders_a_sparse_message_and_escapes_it():
    from types import SimpleNamespace

    from enjournal.services.messaging.web.centre import CentreView

    evil = '<script>alert(1)</script>"'
    summary = content.Summary(id=evil, type="X", sender=evil, receiver="1", state="odd")
    found = content.Content(patient=evil, patient_id="1", title=evil)
    found.sections.append(content.Section(evil, evil, label=False))
    context = {
        **CentreView.context(None),  # type: ignore[arg-type]
        "session": SimpleNamespace(logged_in=True, name=evil),
        "lang": "nb", "csrf": "t", "flash": None, "path": "/meldinger/x", "base": "/meldinger",
        "message": summary, "received": True, "answerable": True, "names": {evil: evil},
        "content": found, "xml": None,
    }  # fmt: skip
    html = environment(CONFIG, "nb").get_template("message.html").render(context)
    assert "<script>" not in html and "&lt;script&gt;" in html


# --- the catalogues --------------------------------------------------------------------------

WEB = Path(str(resources.files("enjournal.services.messaging.web")))


@pytest.mark.parametrize("lang", ["nb", "nn"])
def test_every_message_is_translated_with_the_same_placeholders(lang):
    with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalogue = read_po(source, locale=lang)
    messages = extracted(WEB, SHARED)
    assert "centre.py" in messages["The receipt is sent."]  # view.t()
    assert "content.py" in messages["Discharge summary"]  # N_()
    found = problems(messages, catalogue)
    assert not found, f"translate ({lang}):\n" + "\n".join(found)


def test_templates_show_no_unmarked_text():
    env = environment(CONFIG, "en")
    found = {}
    for path in templates(WEB):
        literal = "".join(v for _, kind, v in env.lex(path.read_text()) if kind == "data")
        words = set(re.findall(r"[^\W\d_]{2,}", visible(literal))) - {
            "Bokmål",
            "Nynorsk",
            "English",
        }
        if words:
            found[path.name] = words
    assert found == {}, "wrap the text in _(...)"

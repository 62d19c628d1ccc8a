"""A citizen's journeys through the portal with the mouse, in a real browser: log in, read
the kjernejournal, lock a prescription, read the access log after a GP looked, block a
health worker and have the GP lift the block, reserve against the kjernejournal, log out.

The server is shared by the session, so each journey that changes something does it as a
demo citizen of its own (or to something it chooses afresh): the order of tests is free.
Assertions look at data and structure, not at wording, so they hold in every language.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from .helpers import PORTAL, axe_check, flash, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REFERENCE_NUMBER = re.compile(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}\b")
GP = "legekontor-0001-fastlege-1"  # the demo's GP (``gp``), on whose list ``citizen`` is


def nav(page: Page, path: str) -> None:
    """Follow the main menu's link to ``path``."""
    with page.expect_navigation():
        page.locator(f"nav.main a[href='{PORTAL}{path}']").click()
    expect(page.locator(f"nav.main a[href='{PORTAL}{path}']")).to_have_attribute(
        "aria-current", "page"
    )


def test_log_in_and_read_the_kjernejournal(page: Page, api):
    patient = api.own_patient("citizen")
    name = " ".join([*patient["name"][0].get("given", []), patient["name"][0]["family"]])
    login(page, "citizen")
    expect(page.locator("p.acting")).to_contain_text(name)
    nav(page, "/kjernejournal")
    expect(page.locator("main h1")).to_have_count(1)
    sections = page.locator("main section")
    expect(sections.first).to_be_visible()
    assert sections.count() >= 5  # critical info, allergies, medicines, vaccines, visits ...
    # The demo citizen has visits with the GP: the visit history has rows with a date.
    dates = page.locator("main section td", has_text=re.compile(r"\d\d\.\d\d\.\d{4}"))
    expect(dates.first).to_be_visible()


def test_lock_a_prescription_shows_its_reference_number(page: Page):
    login(page, "giver")
    nav(page, "/resepter")
    lock_buttons = page.locator(f"form[action='{PORTAL}/resepter/las'] button")
    before = lock_buttons.count()
    assert before >= 1, "giver has no valid prescription left to lock"
    row = page.locator("main tbody tr", has=lock_buttons.first)
    medicine = row.locator("td").first.inner_text()
    with page.expect_navigation() as locked:
        lock_buttons.first.click()
    assert locked.value is not None and locked.value.status == 200, page.url
    expect(flash(page)).to_be_visible()
    assert REFERENCE_NUMBER.search(flash(page).inner_text()), flash(page).inner_text()
    expect(lock_buttons).to_have_count(before - 1)
    locked_row = page.locator("main tbody tr", has_text=medicine).first
    expect(locked_row.locator(".tag.locked")).to_be_visible()
    axe_check(page)  # the page with its message
    page.reload()
    expect(flash(page)).to_have_count(0)  # the number is shown once only
    assert not REFERENCE_NUMBER.search(page.content())


def test_the_access_log_shows_the_gps_look(page: Page, api):
    patient = api.own_patient("citizen")
    practitioner = api.get("gp", f"Practitioner/{GP}").json()
    hpr = next(i["value"] for i in practitioner["identifier"] if i["system"].endswith(".4.4"))
    family = practitioner["name"][0]["family"]
    assert api.get("gp", f"Patient/{patient['id']}").status_code == 200
    login(page, "citizen")
    nav(page, "/innsynslogg")
    rows = page.locator("main tbody tr", has_text=hpr)
    expect(rows.first).to_be_visible()
    expect(rows.first).to_contain_text(family)
    axe_check(page)
    # Filter: today keeps the GP's look; an organisation that never looked shows nothing.
    page.fill("#from", date.today().isoformat())
    with page.expect_navigation():
        page.locator("main form[method=get] button[type=submit]").click()
    expect(page.locator("main tbody tr", has_text=hpr).first).to_be_visible()
    page.fill("#organisation", "999999999")
    with page.expect_navigation():
        page.locator("main form[method=get] button[type=submit]").click()
    expect(page.locator("main tbody tr")).to_have_count(0)
    assert "organisation=999999999" in page.url


def test_block_a_health_worker_by_hpr(page: Page, api):
    """The parent blocks the demo nurse, who read her record a moment before and is now
    refused, even in an emergency."""
    nurse = api.get("gp", "Practitioner/legekontor-0001-sykepleier-1").json()
    hpr = next(i["value"] for i in nurse["identifier"] if i["system"].endswith(".4.4"))
    summary = "Patient/demo-forelder/$summary"
    consent = {"nhn-access-basis": "SAMTYKKE"}
    assert api.get("nurse", summary, **consent).status_code == 200
    login(page, "parent")
    nav(page, "/kjernejournal")
    with page.expect_navigation():
        page.locator(f"main a[href='{PORTAL}/kjernejournal/personvern']").click()
    page.locator("#hpr").fill(hpr)
    with page.expect_navigation():
        page.locator("form:has(#hpr) button[type=submit]").click()
    expect(flash(page)).to_be_visible()
    expect(page.locator("main li", has_text=hpr)).to_have_count(1)
    axe_check(page)
    assert api.get("nurse", summary, **consent).status_code in (403, 404)
    emergency = {"nhn-access-basis": "AKUTT", "nhn-access-reason": b"Bevisstlos pasient"}
    assert api.get("nurse", summary, **emergency).status_code in (403, 404)


def test_block_and_have_the_gp_lift_it(page: Page, api):
    """A citizen blocks a health worker, then asks the GP to lift the block (a citizen
    cannot lift one, domain.md 2.3); the GP, not blocked, lifts it through the API, and the
    citizen sees the block gone and the lifting in the access log."""
    doctor = api.get("gp", "Practitioner/legekontor-0001-fastlege-2").json()
    hpr = next(i["value"] for i in doctor["identifier"] if i["system"].endswith(".4.4"))
    patient = api.own_patient("citizen")["id"]
    login(page, "citizen")
    page.goto(f"{PORTAL}/kjernejournal/personvern")
    page.locator("#hpr").fill(hpr)
    with page.expect_navigation():
        page.locator("form:has(#hpr) button[type=submit]").click()
    blocked = page.locator("main ul.blocked li", has_text=hpr)
    expect(blocked).to_have_count(1)
    with page.expect_navigation():
        blocked.locator("button").click()
    expect(flash(page)).to_be_visible()
    axe_check(page)
    # The GP's office finds the request among the patient's messages and lifts the block.
    found = api.get("gp", f"Communication?subject=Patient/{patient}&_count=100").json()
    asks = [
        e["resource"]
        for e in found.get("entry", [])
        # the patient's other messages (the demo's dialogue messages) carry no category
        if (e["resource"].get("category") or [{}])[0].get("coding", [{}])[0].get("code")
        == "oppheve-blokkering"
        and hpr in e["resource"]["payload"][0]["contentString"]
    ]
    assert asks, "the request to lift did not reach the GP's office"
    lift = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "hpr", "valueString": hpr},
            {"name": "reason", "valueString": "Pasienten ba om det via helsenorge"},
        ],
    }
    assert api.post("gp", f"Patient/{patient}/$kj-lift-block", lift).status_code == 200
    page.reload()
    expect(page.locator("main ul.blocked li", has_text=hpr)).to_have_count(0)
    nav(page, "/innsynslogg")
    gp = api.get("gp", f"Practitioner/{GP}").json()
    gp_hpr = next(i["value"] for i in gp["identifier"] if i["system"].endswith(".4.4"))
    lifting = page.locator("main tbody tr", has_text=gp_hpr).filter(has_text=hpr)
    expect(lifting).to_have_count(1)  # who lifted it, and which block, in one row


def test_reserve_and_see_the_deletion_date(page: Page):
    login(page, "confidential")
    page.goto(f"{PORTAL}/kjernejournal/personvern")
    with page.expect_navigation():
        page.locator("main button.danger").click()
    expect(flash(page)).to_be_visible()
    deletion = (date.today() + timedelta(days=30)).strftime("%d.%m.%Y")
    expect(page.locator("main")).to_contain_text(deletion)
    axe_check(page)
    nav(page, "/kjernejournal")
    expect(page.locator("main [role=alert]")).to_contain_text(deletion)


def test_logout_ends_the_session(page: Page, new_context):
    login(page, "proxy")
    nav(page, "/kjernejournal")
    stolen = page.context.cookies()
    assert [c["name"] for c in stolen] == ["hn_session"]
    with page.expect_navigation():
        page.locator("form[action$='/logout'] button").click()
    expect(page.locator("form[action$='/logout']")).to_have_count(0)
    assert page.context.cookies() == []  # the cookie is removed
    # The old cookie, replayed in another browser, reaches only the start page.
    other = new_context()
    other.add_cookies(stolen)
    replay = other.new_page()
    replay.goto(f"{PORTAL}/kjernejournal")
    assert replay.url.endswith(f"{PORTAL}/")
    expect(replay.locator(f"main a[href='{PORTAL}/login']")).to_be_visible()
    expect(replay.locator("nav.main")).to_have_count(0)
    expect(replay.locator("main section")).to_have_count(0)


# ---- acting for others, the GP office, forms, power of attorney ---------------------------

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def act_for(page: Page, patient_id: str) -> None:
    """On the home page, choose whom to act for and confirm."""
    page.goto(f"{PORTAL}/")
    page.locator(f"input[name=patient][value='{patient_id}']").check()
    with page.expect_navigation():
        page.locator(f"form[action='{PORTAL}/act-for'] button[type=submit]").click()


def test_act_for_a_child_of_5(page: Page):
    login(page, "parent")
    act_for(page, "demo-barn-5")
    expect(page.locator("p.acting")).to_contain_text("Emma")
    answer = page.goto(f"{PORTAL}/kjernejournal")
    assert answer is not None and answer.status == 200
    expect(page.locator("main section").first).to_be_visible()
    axe_check(page)  # a page acting for someone (the banner)


def test_a_parent_is_refused_the_record_of_a_child_of_13(page: Page):
    login(page, "parent")
    page.goto(f"{PORTAL}/")
    # From 12 there is no digital parental access (domain.md 2.3): the child is not offered,
    expect(page.locator("input[name=patient][value='demo-barn-13']")).to_have_count(0)
    # and a form changed to name the child anyway is refused like any stranger's id.
    page.locator("input[name=patient]").first.evaluate("e => { e.value = 'demo-barn-13' }")
    page.locator("input[name=patient]").first.check()
    with page.expect_navigation() as refused:
        page.locator(f"form[action='{PORTAL}/act-for'] button[type=submit]").click()
    assert refused.value is not None and refused.value.status == 404
    expect(page.locator("p.acting")).not_to_contain_text("Jonas")
    axe_check(page)


def test_write_to_the_gp_and_see_the_reply(page: Page, api):
    text = f"Hei, jeg lurer på blodprøvesvaret mitt ({date.today():%d.%m}, nettleser)."
    login(page, "citizen")
    nav(page, "/fastlege")
    page.locator("#text").fill(text)
    with page.expect_navigation():
        page.locator("form:has(#text) button[type=submit]").click()
    expect(flash(page)).to_be_visible()
    thread = page.locator("main section.thread", has_text=text)
    expect(thread).to_have_count(1)
    # The GP answers through the plain FHIR API.
    patient = api.own_patient("citizen")["id"]
    found = api.get("gp", f"Communication?subject=Patient/{patient}&_count=100").json()
    (mine,) = [
        e["resource"]
        for e in found.get("entry", [])
        if any(p.get("contentString") == text for p in e["resource"].get("payload", []))
    ]
    reply = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "sender": {"reference": f"Practitioner/{GP}"},
        "recipient": [{"reference": f"Patient/{patient}"}],
        "inResponseTo": [{"reference": f"Communication/{mine['id']}"}],
        "payload": [{"contentString": "Svaret er fint. Hilsen fastlegen."}],
    }
    assert api.post("gp", "Communication", reply).status_code == 201
    page.reload()
    expect(thread.locator(".message.from-office")).to_contain_text("Svaret er fint")
    axe_check(page)


def test_book_and_cancel_an_appointment(page: Page):
    login(page, "citizen")
    nav(page, "/fastlege")
    slot = page.locator("main input[name=slot]").nth(1)
    when = page.locator(f"label[for='{slot.get_attribute('id')}']").inner_text()
    slot.check()
    with page.expect_navigation():
        page.locator(f"form[action='{PORTAL}/fastlege/bestill'] button[type=submit]").click()
    expect(flash(page)).to_be_visible()
    booked = page.locator("main tbody tr", has_text=when)
    expect(booked).to_have_count(1)
    expect(page.locator("main input[name=slot] + label", has_text=when)).to_have_count(0)
    with page.expect_navigation():
        booked.locator(f"form[action='{PORTAL}/fastlege/avbestill'] button").click()
    expect(flash(page)).to_be_visible()
    expect(page.locator("main tbody tr", has_text=when)).to_have_count(0)


def test_submit_a_form(page: Page):
    login(page, "giver")
    nav(page, "/skjema")
    sent_before = page.locator("main h2 + ul li").count()
    with page.expect_navigation():
        page.locator(f"main a[href='{PORTAL}/skjema/egenrapport-for-time']").click()
    page.locator("#q-arsak").fill("Vondt i kneet")
    page.locator("#q-varighet").fill("4")
    page.locator("#q-feber-no").check()
    page.locator("#q-smerte-2").check()
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()
    expect(flash(page)).to_be_visible()
    assert page.url.endswith(f"{PORTAL}/skjema")
    sent = page.locator("main h2 + ul li")
    expect(sent).to_have_count(sent_before + 1)
    expect(sent.first).to_contain_text(date.today().strftime("%d.%m.%Y"))


def test_give_use_and_revoke_a_power_of_attorney(page: Page, new_context, api):
    citizen = api.own_patient("citizen")
    fnr = next(i["value"] for i in citizen["identifier"] if i["system"] == FNR)
    family = citizen["name"][0]["family"]
    login(page, "giver")
    nav(page, "/fullmakt")
    page.locator("#receiver").fill(fnr)
    page.locator("#receiver-family").fill(family)
    page.locator("#area-3").check()
    with page.expect_navigation():
        page.locator("form:has(#receiver) button[type=submit]").click()
    expect(flash(page)).to_be_visible()
    given = page.locator("main tbody tr", has_text=family)
    expect(given).to_have_count(1)
    # The citizen now acts for the giver, and sees the giver's prescriptions.
    other = new_context().new_page()
    login(other, "citizen")
    act_for(other, "demo-fullmaktsgiver")
    expect(other.locator("p.acting")).to_contain_text("Arne Haugen")
    answer = other.goto(f"{PORTAL}/resepter")
    assert answer is not None and answer.status == 200
    expect(other.locator("main tbody")).to_contain_text("Metformin")
    # Revoked: gone from both sides, and the citizen's next page is refused.
    with page.expect_navigation():
        given.locator("button").click()
    expect(page.locator("main tbody tr", has_text=family)).to_have_count(0)
    answer = other.goto(f"{PORTAL}/resepter")
    assert answer is not None and answer.status == 404
    other.goto(f"{PORTAL}/")
    expect(other.locator("input[name=patient][value='demo-fullmaktsgiver']")).to_have_count(0)


def test_restrict_and_see_an_emergency_access_marked(page: Page, api):
    """A restricted record opened in an emergency (AKUTT) is marked in the access log; the
    health worker's free-text reason is never shown."""
    reason = "Bevisstløs etter fall, ingen pårørende"
    nurse = api.get("gp", "Practitioner/legekontor-0001-sykepleier-1").json()
    login(page, "proxy")
    page.goto(f"{PORTAL}/kjernejournal/personvern")
    page.locator("#part-hele").check()
    with page.expect_navigation():
        page.locator("form:has(#part-hele) button[type=submit]").click()
    expect(page.locator("#part-hele")).to_be_checked()
    try:
        headers = {"nhn-access-basis": "AKUTT", "nhn-access-reason": reason.encode()}
        opened = api.get("nurse", "Patient/demo-fullmektig/$summary", **headers)
        assert opened.status_code == 200, opened.text
        nav(page, "/innsynslogg")
        row = page.locator("main tbody tr", has=page.locator(".tag.emergency")).first
        expect(row).to_contain_text(nurse["name"][0]["family"])
        assert reason not in page.content()
        axe_check(page)
    finally:  # the restriction lifted again, for the other tests of proxy's record
        page.goto(f"{PORTAL}/kjernejournal/personvern")
        page.locator("#part-hele").uncheck()
        with page.expect_navigation():
            page.locator("form:has(#part-hele) button[type=submit]").click()


# ---- what the pages show --------------------------------------------------------------------

PAGES = ("/", "/kjernejournal", "/resepter", "/innsynslogg", "/fastlege", "/skjema", "/fullmakt")
RAW_REFERENCE = re.compile(
    r"\b(Patient|Practitioner|PractitionerRole|Organization|Location|Medication|"
    r"MedicationRequest|Communication|Encounter|RelatedPerson|Condition)/[A-Za-z0-9\-.]+"
)


@pytest.mark.parametrize(
    "who",
    ["citizen", "parent", "proxy", "giver"],
)
def test_pages_name_people_not_references(signed_in, who):
    page = signed_in(who, None)
    found = {}
    for path in PAGES:
        page.goto(f"{PORTAL}{path}")
        text = page.locator("main").inner_text()
        refs = sorted({m.group(0) for m in RAW_REFERENCE.finditer(text)})
        if refs:
            found[path] = refs
    assert not found, f"raw references shown to {who}: {found}"

"""The follow-up centre end to end in headless Chromium: the home-care nurse logs in
through the embedded provider, sees the followed patients, opens one patient's charts; a
low SpO2 reading comes through the hub and raises an alert, which the nurse acknowledges
and closes with what was done; a patient of no relationship is the 404 page; axe finds no
WCAG 2.1 A/AA violation on any page; and the same journey by keyboard alone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.services.helsenorge.browser.helpers import (
    axe_check,
    field,
    focused,
    press_enter_and_wait,
    tab_to,
)

from .conftest import CENTRE, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
FOLLOWED = 6


def followed(api) -> list[dict]:
    """The followed patients, as the nurse's API sees them (active care plans' subjects)."""
    answer = api.get("homecare", "Patient?_has:CarePlan:subject:status=active")
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", [])]


def fnr_of(patient: dict) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == FNR)


def stranger(api) -> str:
    """A patient of the population the nurse has no relationship with (the GP sees them)."""
    mine = {p["id"] for p in followed(api)}
    answer = api.get("gp", "Patient?_count=50")
    assert answer.status_code == 200, answer.text
    ids = [e["resource"]["id"] for e in answer.json()["entry"]]
    return next(i for i in ids if i not in mine)


def test_the_nurse_sees_the_followed_patients_and_a_chart(staff_page, api):
    page = staff_page("/")
    expect(page.locator("h1")).to_have_text("Oversikt")
    rows = page.locator("table.patients tbody tr")
    expect(rows).to_have_count(FOLLOWED)
    axe_check(page)
    first = followed(api)[0]
    page.goto(f"{CENTRE}/pasient/{first['id']}")
    expect(page.locator("figure#chart-spo2 svg")).to_have_count(1)
    expect(page.locator("figure#chart-spo2 line.threshold")).to_have_count(1)
    expect(page.locator("figure#chart-bp line.threshold")).to_have_count(1)
    assert page.locator("figure#chart-spo2 circle.point").count() >= 20
    axe_check(page)


def test_a_low_spo2_raises_an_alert_the_nurse_acknowledges_and_closes(staff_page, api, ingest):
    patient = followed(api)[1]
    device = f"oksymeter-{patient['id'][-6:]}"
    alerts = ingest(device, fnr_of(patient), "spo2", 85)
    task = next(a["id"] for a in alerts if a["kind"] == "threshold")
    page = staff_page("/")
    row = page.locator(f"#alert-{task}")
    expect(row).to_contain_text("Terskel overskredet")
    axe_check(page)
    row.get_by_role("button", name="Kvitter").click()
    expect(page.locator("main .flash")).to_contain_text("kvittert")
    expect(row).to_contain_text("kvittert")
    row.get_by_label("Hva ble gjort").fill("Ringte pasienten, ny måling 95 %.")
    row.get_by_role("button", name="Lukk").click()
    expect(page.locator("main .flash")).to_contain_text("lukket")
    expect(page.locator(f"#alert-{task}")).to_have_count(0)
    page.goto(f"{CENTRE}/pasient/{patient['id']}")
    closed = page.locator(f"#alert-{task}")
    expect(closed).to_contain_text("Ringte pasienten")
    axe_check(page)


def test_a_patient_of_another_service_is_not_found(staff_page, api):
    page = staff_page(None)
    answer = page.goto(f"{CENTRE}/pasient/{stranger(api)}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Fant ikke siden")
    axe_check(page)


@pytest.mark.parametrize("lang", ["nn", "en"])
def test_the_pages_in_nynorsk_and_english(staff_page, api, lang):
    page = staff_page("/")
    page.select_option("#lang-choice", lang)
    with page.expect_navigation():
        page.locator("form[action$='/language'] button[type=submit]").click()
    expect(page.locator("html")).to_have_attribute("lang", lang)
    heading = {"nn": "Oversikt", "en": "Overview"}[lang]
    expect(page.locator("h1")).to_have_text(heading)
    axe_check(page)
    page.goto(f"{CENTRE}/pasient/{followed(api)[0]['id']}")
    axe_check(page)


def test_the_start_page_and_the_logged_out_page(page: Page):
    page.goto(f"{CENTRE}/")
    expect(page.locator("a[href$='/login']")).to_have_count(1)
    axe_check(page)
    login(page)
    page.locator("form[action$='/logout'] button").click()
    expect(page.locator("h1")).to_have_text("Du er logget ut")
    axe_check(page)


def test_the_journey_by_keyboard_alone(page: Page, api, ingest):
    patient = followed(api)[2]
    alerts = ingest(f"oksymeter-{patient['id'][-6:]}", fnr_of(patient), "spo2", 84)
    task = next(a["id"] for a in alerts if a["kind"] == "threshold")
    page.goto(f"{CENTRE}/")
    tab_to(page, lambda f: f["tag"] == "a" and f["href"].endswith("/login"))
    press_enter_and_wait(page)  # the provider's chooser
    tab_to(page, lambda f: f["tag"] == "button" and f["value"] == "homecare")
    with page.expect_navigation(url=re.compile(rf"{CENTRE}/$")):
        page.keyboard.press("Enter")
    tab_to(page, lambda f: f["tag"] == "a" and f["href"] == f"{CENTRE}/pasient/{patient['id']}")
    press_enter_and_wait(page)
    expect(page.locator("figure#chart-spo2 line.threshold")).to_have_count(1)
    tab_to(page, form_button(task, "kvitter"))
    press_enter_and_wait(page)
    expect(page.locator("main .flash")).to_contain_text("kvittert")
    tab_to(page, field(f"action-{task}"))
    page.keyboard.type("Tilsyn, pasienten har det bra.")
    tab_to(page, form_button(task, "lukk"))
    press_enter_and_wait(page)
    expect(page.locator("main .flash")).to_contain_text("lukket")
    assert focused(page)["tag"] in ("body", "main", "a", "button", "input", "select")
    expect(page.locator(f"#alert-{task} button")).to_have_count(0)


def form_button(task: str, step: str):
    action = f"{CENTRE}/varsel/{task}/{step}"
    return lambda f: f["tag"] == "button" and f["form"] == action

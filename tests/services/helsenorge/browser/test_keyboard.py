"""The journeys with the keyboard alone: Tab and Shift+Tab to move, Enter and Space to act,
typing into fields; never a click.  A control that Tab does not reach fails the test (so it
is not usable without a mouse)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from .helpers import (
    PORTAL,
    button,
    field,
    flash,
    focused,
    link_to,
    press_enter_and_wait,
    tab_to,
)
from .test_journeys import GP, REFERENCE_NUMBER

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def keyboard_login(page: Page, who: str) -> None:
    """From the start page to the portal's home page as ``who``, by keyboard."""
    page.goto(f"{PORTAL}/")
    tab_to(page, link_to("/login"))
    press_enter_and_wait(page)  # to the provider's chooser
    tab_to(page, button(value=who))
    with page.expect_navigation(url=re.compile(rf"{PORTAL}/$")):
        page.keyboard.press("Enter")
    expect(page.locator("form[action$='/logout']")).to_have_count(1)


def go(page: Page, path: str) -> None:
    """Tab to the main menu's link to ``path`` and follow it."""
    tab_to(page, link_to(path))
    press_enter_and_wait(page)
    assert page.url.endswith(f"{PORTAL}{path}")


def test_skip_link_comes_first_and_moves_to_the_content(page: Page):
    page.goto(f"{PORTAL}/")
    page.keyboard.press("Tab")
    assert focused(page)["href"] == "#main"
    expect(page.locator("a.skip")).to_be_in_viewport()  # visible when it has the focus
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # the next stop is inside main, past the header
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_log_in_and_read_the_kjernejournal(page: Page):
    keyboard_login(page, "citizen")
    go(page, "/kjernejournal")
    expect(page.locator("main section").first).to_be_visible()
    dates = page.locator("main section td", has_text=re.compile(r"\d\d\.\d\d\.\d{4}"))
    expect(dates.first).to_be_visible()


def test_lock_a_prescription(signed_in):
    page = signed_in("giver")  # logging in by keyboard: the first test
    go(page, "/resepter")
    lock_buttons = page.locator(f"form[action='{PORTAL}/resepter/las'] button")
    before = lock_buttons.count()
    assert before >= 1, "giver has no valid prescription left to lock"
    tab_to(page, button(form="/resepter/las"))
    with page.expect_navigation() as locked:
        page.keyboard.press("Space")
    assert locked.value is not None and locked.value.status == 200, page.url
    expect(flash(page)).to_be_visible()
    assert REFERENCE_NUMBER.search(flash(page).inner_text()), flash(page).inner_text()
    expect(lock_buttons).to_have_count(before - 1)


def test_read_and_filter_the_access_log(signed_in, api):
    patient = api.own_patient("citizen")
    assert api.get("gp", f"Patient/{patient['id']}").status_code == 200
    practitioner = api.get("gp", f"Practitioner/{GP}").json()
    hpr = next(i["value"] for i in practitioner["identifier"] if i["system"].endswith(".4.4"))
    page = signed_in("citizen")
    go(page, "/innsynslogg")
    expect(page.locator("main tbody tr", has_text=hpr).first).to_be_visible()
    # To the filter's button, back with Shift+Tab to the organisation, type, and Space.
    tab_to(page, lambda f: f["tag"] == "button" and f["form"] == "")
    tab_to(page, field("organisation"), backwards=True)
    page.keyboard.type("999999999")
    tab_to(page, lambda f: f["tag"] == "button" and f["form"] == "")
    with page.expect_navigation():
        page.keyboard.press("Space")
    assert "organisation=999999999" in page.url
    expect(page.locator("main tbody tr")).to_have_count(0)
    # And today's accesses again, by Enter in the date field after typing today's date.
    tab_to(page, field("organisation"))
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "organisation=&" in page.url or page.url.endswith("organisation=")
    expect(page.locator("main tbody tr", has_text=hpr).first).to_be_visible()
    assert date.today().strftime("%d.%m.%Y") in page.locator("main tbody").inner_text()


def test_block_a_health_worker(signed_in):
    hpr = "5551234"
    page = signed_in("proxy")  # logging in by keyboard: the first test
    go(page, "/kjernejournal")
    tab_to(page, link_to("/kjernejournal/personvern"))
    press_enter_and_wait(page)
    tab_to(page, field("hpr"))
    page.keyboard.type(hpr)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(flash(page)).to_be_visible()
    expect(page.locator("main li", has_text=hpr)).to_have_count(1)
    # The block's own button asks the GP to lift it (a citizen cannot lift a block).
    tab_to(page, lambda f: f["tag"] == "button" and f["change"] == "lift-request")
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()


def test_log_out(page: Page):
    keyboard_login(page, "citizen")
    tab_to(page, button(form="/logout"))
    press_enter_and_wait(page)
    expect(page.locator("form[action$='/logout']")).to_have_count(0)
    assert page.context.cookies() == []


def choose_radio(page: Page, name: str, value: str) -> None:
    """In a radio group that has the focus, arrow down to ``value`` (arrows select)."""
    for _ in range(40):
        if focused(page)["value"] == value:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{value} not reached in the {name} radio group")


def test_act_for_a_child(page: Page):
    keyboard_login(page, "parent")  # a session of its own: it ends acting for the child
    tab_to(page, lambda f: f["name"] == "patient")  # the group's checked radio
    choose_radio(page, "patient", "demo-barn-5")
    tab_to(page, button(form="/act-for"))
    press_enter_and_wait(page)
    expect(page.locator("p.acting")).to_contain_text("Emma")
    expect(page.locator("input[name=patient][value='demo-barn-5']")).to_be_checked()


def test_write_to_the_gp(signed_in):
    text = "Kan jeg få en telefontime? (tastatur)"
    page = signed_in("proxy")
    go(page, "/fastlege")
    tab_to(page, field("text"))
    page.keyboard.type(text)
    tab_to(page, button(form="/fastlege/melding"))
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    expect(page.locator("main section.thread", has_text=text)).to_have_count(1)


def test_book_and_cancel_an_appointment(signed_in):
    page = signed_in("proxy")
    go(page, "/fastlege")
    tab_to(page, lambda f: f["name"] == "slot")
    page.keyboard.press("ArrowDown")  # the second free time
    chosen = focused(page)["id"]
    when = page.locator(f"label[for='{chosen}']").inner_text()
    tab_to(page, field("comment"))
    page.keyboard.type("Kontroll")
    page.keyboard.press("Enter")  # Enter in a text field submits its form
    page.wait_for_load_state()
    expect(flash(page)).to_be_visible()
    expect(page.locator("main tbody tr", has_text=when)).to_have_count(1)
    tab_to(page, button(form="/fastlege/avbestill"))
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    expect(page.locator("main tbody tr", has_text=when)).to_have_count(0)


def test_submit_a_form(signed_in):
    page = signed_in("proxy")
    go(page, "/skjema")
    tab_to(page, link_to("/skjema/egenrapport-for-time"))
    press_enter_and_wait(page)
    tab_to(page, field("q-arsak"))
    page.keyboard.type("Hoste")
    page.keyboard.press("Tab")
    page.keyboard.type("3")
    page.keyboard.press("Tab")  # the fever group: no choice yet, so its first radio
    page.keyboard.press("Space")
    assert focused(page)["id"] == "q-feber-yes"
    tab_to(page, button())
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    assert page.url.endswith(f"{PORTAL}/skjema")


def test_give_and_revoke_a_power_of_attorney(signed_in, api):
    receiver = api.own_patient("giver")
    fnr = next(i["value"] for i in receiver["identifier"] if i["system"].endswith(".4.1"))
    page = signed_in("parent")
    go(page, "/fullmakt")
    tab_to(page, field("receiver"))
    page.keyboard.type(fnr)
    page.keyboard.press("Tab")  # the receiver's family name
    page.keyboard.type(receiver["name"][0]["family"])
    page.keyboard.press("Tab")  # area 1, checked already
    page.keyboard.press("Tab")  # area 3
    page.keyboard.press("Space")
    assert page.locator("#area-3").is_checked()
    tab_to(page, lambda f: f["tag"] == "button" and f["text"] and f["form"] == "")
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    row = page.locator("main tbody tr", has_text=receiver["name"][0]["family"])
    expect(row).to_have_count(1)
    tab_to(page, lambda f: f["tag"] == "button" and f["name"] == "" and "Haugen" in f["label"])
    press_enter_and_wait(page)
    expect(row).to_have_count(0)


def test_reserve_and_regret(signed_in):
    page = signed_in("citizen")
    go(page, "/kjernejournal")
    tab_to(page, link_to("/kjernejournal/personvern"))
    press_enter_and_wait(page)
    reserve_form = lambda f: f["tag"] == "button" and f["change"] == "reserve"  # noqa: E731
    tab_to(page, reserve_form)
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    deletion = (date.today() + timedelta(days=30)).strftime("%d.%m.%Y")
    expect(page.locator("main")).to_contain_text(deletion)
    tab_to(page, reserve_form)  # now the form withdraws the reservation
    press_enter_and_wait(page)
    expect(flash(page)).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(deletion)

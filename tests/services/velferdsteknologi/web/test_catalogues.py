"""The follow-up centre's bokmål and nynorsk catalogues cover every message it shows, with
the same placeholders (the portal's checks, on this site's package and the shared templates
of ``enjournal.web``), and its templates show no unmarked text."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from enjournal.services.velferdsteknologi.web.centre import CONFIG
from enjournal.web.site import environment
from tests.services.helsenorge.test_catalogues import (
    SHARED,
    extracted,
    problems,
    templates,
    visible,
)

WEB = Path(str(resources.files("enjournal.services.velferdsteknologi.web")))
UNMARKED = {"Bokmål", "Nynorsk", "English"}  # each language's own name


def catalogue(lang: str) -> Catalog:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=lang)


def test_extraction_finds_the_templates_n_and_view_t():
    messages = extracted(WEB, SHARED)
    assert "templates/overview.html" in messages["Patients under follow-up"]
    assert "../../../web/templates/layout.html" in messages["Log out"]  # shared
    assert "charts.py" in messages["Blood pressure"]  # N_()
    assert "centre.py" in messages["The alert is closed."]  # view.t()


@pytest.mark.parametrize("lang", ["nb", "nn"])
def test_every_message_is_translated_with_the_same_placeholders(lang):
    found = problems(extracted(WEB, SHARED), catalogue(lang))
    assert not found, f"run `make catalogs` and translate ({lang}):\n" + "\n".join(found)


def test_templates_show_no_unmarked_text():
    env = environment(CONFIG, "en")
    found = {}
    for path in templates(WEB):
        literal = "".join(v for _, kind, v in env.lex(path.read_text()) if kind == "data")
        words = set(re.findall(r"[^\W\d_]{2,}", visible(literal))) - UNMARKED
        if words:
            found[path.name] = words
    assert found == {}, "wrap the text in _(...)"

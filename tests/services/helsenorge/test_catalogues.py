"""The portal's bokmål and nynorsk catalogues cover every message it shows.

The messages are extracted here, at test time, from the templates and Python sources (the
portal's and the shared templates of ``enjournal.web``, which render with the portal's
catalogue) with Babel's extractors and the portal's ``babel.cfg`` (not read from the committed
``messages.pot``), so a new ``_("...")``, ``N_("...")`` or ``view.t("...")`` without a
translation fails until ``make catalogs`` has run and someone has translated it.
"""

from __future__ import annotations

import os
import re
from html import unescape
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from enjournal.services.helsenorge.web.portal import CONFIG
from enjournal.web.sessions import new_session
from enjournal.web.site import environment

WEB = Path(str(resources.files("enjournal.services.helsenorge.web")))
SHARED = Path(str(resources.files("enjournal.web")))  # the templates every site shares
LANGUAGES = ("nb", "nn")
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def extracted(*directories: Path) -> dict[str, set[str]]:
    """Every message under ``directories`` (the portal's and the shared ones) with the files
    it is in, relative to the first as ``make catalogs`` writes them, as ``babel.cfg`` says."""
    directories = directories or (WEB, SHARED)
    with (WEB / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config, str(WEB / "babel.cfg"))
    found: dict[str, set[str]] = {}
    for directory in directories:
        for filename, _line, message, _comments, _context in extract_from_dir(
            str(directory), method_map, options_map
        ):
            where = os.path.relpath(directory / filename, directories[0])
            for text in message if isinstance(message, tuple) else (message,):
                found.setdefault(text, set()).add(where)
    return found


def catalogue(lang: str) -> Catalog:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=lang)


def problems(messages: dict[str, set[str]], catalog: Catalog) -> list[str]:
    """What is wrong with ``catalog`` for ``messages``: missing, empty or fuzzy
    translations, placeholders that differ, and a lone ``%`` (the templates' newstyle
    gettext always %-formats, so it would break the page)."""
    found = []
    for msgid, files in sorted(messages.items()):
        entry = catalog.get(msgid)
        where = f"{msgid!r} ({', '.join(sorted(files))})"
        if entry is None or not entry.string or entry.fuzzy:
            found.append(f"untranslated: {where}")
            continue
        for text in entry.string if isinstance(entry.string, tuple) else (entry.string,):
            if sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(msgid)):
                found.append(f"placeholders differ: {where} -> {text!r}")
            elif "%" in PLACEHOLDER.sub("", text).replace("%%", ""):
                found.append(f"a lone %: {where} -> {text!r}")
    return found


def test_extraction_finds_templates_n_and_view_t():
    messages = extracted()
    assert "templates/base.html" in messages["Services"]
    assert "../../../web/templates/layout.html" in messages["Log out"]  # shared
    assert "record.py" in messages["Vaccines"]  # N_()
    assert "medicines.py" in messages["Please renew this prescription."]  # view.t()
    assert any("%(number)s" in m for m in messages)  # a view.t() over several lines


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_translated_with_the_same_placeholders(lang):
    found = problems(extracted(), catalogue(lang))
    assert not found, f"run `make catalogs` and translate ({lang}):\n" + "\n".join(found)


def test_a_new_message_without_a_translation_is_reported(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "new.html").write_text(
        '{{ _("A page nobody has translated yet") }} {{ _("Log out") }}'
    )
    (tmp_path / "new.py").write_text('view.t("Sent %(what)s", what=x)\n')
    messages = extracted(tmp_path)
    found = problems(messages, catalogue("nn"))
    assert found == [
        "untranslated: 'A page nobody has translated yet' (templates/new.html)",
        "untranslated: 'Sent %(what)s' (new.py)",
    ]


def test_a_translation_with_other_placeholders_or_a_lone_percent_is_reported():
    catalog = Catalog(locale="nn")
    catalog.add("Lock %(medicine)s", "Lås %(medisin)s")
    catalog.add("Valid to", "Gyldig til 100 %")
    found = problems({"Lock %(medicine)s": {"a.html"}, "Valid to": {"a.html"}}, catalog)
    assert [f.split(":")[0] for f in found] == ["placeholders differ", "a lone %"]


class VisibleText(HTMLParser):
    """The text a reader meets: text nodes and the labels read out (aria-label, title,
    placeholder, alt); not scripts, styles or other attributes."""

    READ = ("aria-label", "title", "placeholder", "alt")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.parts += [value for name, value in attrs if name in self.READ and value]

    def handle_data(self, data):
        self.parts.append(data)


def visible(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return unescape(" ".join(parser.parts))


def english_left(text: str, lang: str) -> list[str]:
    """The msgids (translated to something else in ``lang``) that ``text`` still shows."""
    return [m.id for m in catalogue(lang) if m.id and m.string != m.id and shown(m.id, text)]


def shown(msgid: str, text: str) -> bool:
    """Whether ``text`` holds ``msgid`` as whole words, whatever its placeholders became."""
    pattern = ".+?".join(re.escape(part) for part in PLACEHOLDER.split(msgid))
    return re.search(rf"(?<!\w){pattern}(?!\w)", text) is not None


def render(template: str, lang: str, logged_in: bool, **data) -> str:
    session = new_session(lang)
    if logged_in:
        session.access_token, session.name = "t", "Kari Nordmann"
    context = {
        **data,
        "self_patient": "kari" if logged_in else None,
        "acting_for": None,
        "acting_name": None,
        "session": session,
        "lang": lang,
        "csrf": session.csrf,
        "flash": None,
        "path": "/helsenorge/",
        "base": "/helsenorge",
    }
    return environment(CONFIG, lang).get_template(template).render(context)


# Text a template may show unmarked: the brand and each language's own name.
UNMARKED = {"Helsenorge", "Bokmål", "Nynorsk", "English"}


def unmarked(source: str) -> set[str]:
    """The words a template shows outside ``{{ }}`` and ``{% %}`` (its literal text)."""
    env = environment(CONFIG, "en")
    literal = "".join(v for _, kind, v in env.lex(source) if kind == "data")
    return set(re.findall(r"[^\W\d_]{2,}", visible(literal))) - UNMARKED


def templates(web: Path) -> list[Path]:
    """The site's templates and the shared ones it falls back to."""
    return sorted([*(web / "templates").glob("*.html"), *(SHARED / "templates").glob("*.html")])


def test_templates_show_no_unmarked_text():
    found = {path.name: words for path in templates(WEB) if (words := unmarked(path.read_text()))}
    assert found == {}, "wrap the text in _(...)"


def test_unmarked_text_is_reported():
    assert unmarked('<p title="Help">Hello {{ _("Log out") }}</p>') == {"Help", "Hello"}


PEOPLE = [
    {"id": "kari", "name": "Kari Nordmann", "relation": "self", "age": 40},
    {"id": "lise", "name": "Lise Nordmann", "relation": "parent", "age": 8},
    {"id": "ola", "name": "Ola Nordmann", "relation": "fullmakt", "age": 70},
]


@pytest.mark.parametrize(
    ("template", "logged_in", "data", "expected"),
    [
        ("start.html", False, {}, "Velkomen til Helsenorge"),
        ("home.html", True, {"people": PEOPLE}, "Kven har sett journalen min"),
        ("error.html", True, {"code": 404, "message": None}, "Fann ikkje sida"),
    ],
)
def test_a_page_in_nynorsk_shows_no_english(template, logged_in, data, expected):
    html = render(template, "nn", logged_in, **data)
    text = visible(html)
    assert '<html lang="nn">' in html
    assert expected in text
    assert english_left(text, "nn") == []
    assert english_left(visible(render(template, "en", logged_in, **data)), "nn")  # can fail

"""Refresh the helsenorge portal's message catalogues (``make catalogs``).

Extracts every message of the portal's templates and Python sources (``web/babel.cfg``) to
``web/locale/messages.pot``, then updates the bokmål and nynorsk ``messages.po`` from it:
existing translations are kept, new messages arrive with an empty msgstr, and a changed
message is offered its old translation marked ``fuzzy`` (shown in English until a translator
removes the mark).  Then lists what still needs translating; exit status 1 when anything
does, so a translator sees it and tests/services/helsenorge/test_catalogues.py agrees.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parent.parent / "enjournal" / "services" / "helsenorge" / "web"
LOCALE = WEB / "locale"
TEMPLATE = LOCALE / "messages.pot"
LANGUAGES = ("nb", "nn")  # English is the msgid: no catalogue


def extract() -> None:
    LOCALE.mkdir(exist_ok=True)
    before = TEMPLATE.read_text() if TEMPLATE.exists() else ""
    os.chdir(WEB)  # locations relative to web/: templates/home.html, record.py
    pybabel(
        "extract",
        "--mapping-file",
        str(WEB / "babel.cfg"),
        "--output-file",
        str(TEMPLATE),
        "--project",
        "enjournal helsenorge",
        "--copyright-holder",
        "enjournal",
        "--no-wrap",
        "--add-location",
        "file",  # no line numbers: editing a template does not touch every entry
        "--sort-by-file",
        ".",
    )
    if _undated(TEMPLATE.read_text()) == _undated(before):
        TEMPLATE.write_text(before)  # nothing new: no diff for the date alone


def _undated(pot: str) -> str:
    return "\n".join(line for line in pot.splitlines() if "POT-Creation-Date" not in line)


def update(lang: str) -> None:
    pybabel(
        "update",
        "--input-file",
        str(TEMPLATE),
        "--output-dir",
        str(LOCALE),
        "--locale",
        lang,
        "--init-missing",
        "--no-wrap",
        "--ignore-pot-creation-date",
    )


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "--quiet", *args])


def untranslated(lang: str) -> list[str]:
    with (LOCALE / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=lang)
    return [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]


def main() -> int:
    extract()
    missing = 0
    for lang in LANGUAGES:
        update(lang)
        todo = untranslated(lang)
        missing += len(todo)
        for message in todo:
            print(f"{lang}: untranslated or fuzzy: {message!r}")
    print(f"{TEMPLATE.relative_to(WEB.parents[3])}: updated; {missing} to translate")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

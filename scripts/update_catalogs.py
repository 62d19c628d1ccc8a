"""Refresh the web sites' message catalogues (``make catalogs``): the helsenorge portal's,
the follow-up centre's (velferdsteknologi) and the message centre's (messaging), each a web
package with its own catalogues; ``python scripts/update_catalogs.py helsenorge`` does one of them.

For each, extracts every message of its templates and Python sources (``web/babel.cfg``), and
of the templates the sites share (``enjournal/web/templates``, rendered with the site's
catalogue), to
``web/locale/messages.pot``, then updates the bokmål and nynorsk ``messages.po`` from it:
existing translations are kept, new messages arrive with an empty msgstr, and a changed
message is offered its old translation marked ``fuzzy`` (shown in English until a translator
removes the mark).  Then lists what still needs translating; exit status 1 when anything
does, so a translator sees it and the sites' test_catalogues.py agree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

SERVICES = Path(__file__).resolve().parent.parent / "enjournal" / "services"
SITES = {name: SERVICES / name / "web" for name in ("helsenorge", "velferdsteknologi", "messaging")}
SHARED = SERVICES.parent / "web"  # enjournal.web: templates/ every site falls back to
LANGUAGES = ("nb", "nn")  # English is the msgid: no catalogue


def extract(web: Path) -> None:
    locale, template = web / "locale", web / "locale" / "messages.pot"
    locale.mkdir(exist_ok=True)
    before = template.read_text() if template.exists() else ""
    os.chdir(web)  # locations relative to web/: templates/home.html, record.py
    pybabel(
        "extract",
        "--mapping-file",
        str(web / "babel.cfg"),
        "--output-file",
        str(template),
        "--project",
        f"enjournal {web.parent.name}",
        "--copyright-holder",
        "enjournal",
        "--no-wrap",
        "--add-location",
        "file",  # no line numbers: editing a template does not touch every entry
        "--sort-by-file",
        ".",
        os.path.relpath(SHARED, web),  # ../../../web/templates/layout.html
    )
    if _undated(template.read_text()) == _undated(before):
        template.write_text(before)  # nothing new: no diff for the date alone


def _undated(pot: str) -> str:
    return "\n".join(line for line in pot.splitlines() if "POT-Creation-Date" not in line)


def update(web: Path, lang: str) -> None:
    pybabel(
        "update",
        "--input-file",
        str(web / "locale" / "messages.pot"),
        "--output-dir",
        str(web / "locale"),
        "--locale",
        lang,
        "--init-missing",
        "--no-wrap",
        "--ignore-pot-creation-date",
    )


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "--quiet", *args])


def untranslated(web: Path, lang: str) -> list[str]:
    with (web / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=lang)
    return [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]


def refresh(web: Path) -> int:
    """Extract and update one site's catalogues; how many messages need translating."""
    extract(web)
    missing = 0
    for lang in LANGUAGES:
        update(web, lang)
        todo = untranslated(web, lang)
        missing += len(todo)
        for message in todo:
            print(f"{web.parent.name} {lang}: untranslated or fuzzy: {message!r}")
    template = web / "locale" / "messages.pot"
    print(f"{template.relative_to(web.parents[3])}: updated; {missing} to translate")
    return missing


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SITES]
    if unknown:
        print(f"no site {unknown}; the sites are {sorted(SITES)}", file=sys.stderr)
        return 2
    missing = sum(refresh(SITES[name]) for name in names or SITES)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Languages: bokmål (nb, the default), nynorsk (nn) and English (en), from Babel message
catalogues (``<package>/<folder>/<lang>/LC_MESSAGES/<domain>.po``, read at start: no compile
step), and dates and numbers in Norwegian format in every language.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LANGUAGES = ("nb", "nn", "en")
DEFAULT = "nb"
OSLO = ZoneInfo("Europe/Oslo")


@cache
def translations(
    package: str, lang: str, domain: str = "messages", folder: str = "locale"
) -> NullTranslations:
    """The catalogue of ``lang`` in ``package`` (a site's web package), compiled in memory;
    none (the English msgids) where there is no catalogue."""
    path = resources.files(package) / folder / lang / "LC_MESSAGES" / f"{domain}.po"
    if not path.is_file():
        return NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


def N_(message: str) -> str:
    """Marks a message for the catalogues where it is defined; translated where shown."""
    return message


def chosen(lang: str | None) -> str:
    """``lang`` if it is one of ours, else the default (bokmål)."""
    return lang if lang in LANGUAGES else DEFAULT


def when(value: str | None, lang: str) -> str:
    """A FHIR dateTime or instant as Norwegian local time, ``02.12.2026 kl. 14:30``; a
    plain date as ``02.12.2026``."""
    if not value:
        return ""
    if len(value) <= 10:
        return day(value, lang)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OSLO)
    at = {"nb": "'kl.'", "nn": "'kl.'", "en": "'at'"}[chosen(lang)]
    return format_datetime(moment, f"dd.MM.yyyy {at} HH:mm", tzinfo=OSLO, locale=chosen(lang))


def day(value: str | None, lang: str) -> str:
    if not value:
        return ""
    parts = value[:10].split("-")
    if len(parts) < 3:  # a year, or a year and month (FHIR partial dates)
        return ".".join(reversed(parts))
    return format_date(date.fromisoformat(value[:10]), "dd.MM.yyyy", locale=chosen(lang))


def long_day(value: date, lang: str) -> str:
    return format_date(value, "d. MMMM yyyy", locale=chosen(lang))


def number(value: float | int | None, lang: str) -> str:
    """Norwegian digit grouping and decimal comma (``1 234,5``) in every language."""
    return "" if value is None else format_decimal(value, locale="nb")

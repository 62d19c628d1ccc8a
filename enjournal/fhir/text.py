"""Text normalisation for string search: FHIR string search ignores case and accents."""

from __future__ import annotations

import unicodedata

# Letters that Unicode does not decompose into base letter + accent, but that a FHIR
# server should still fold for case/accent-insensitive matching.  Norwegian æ, ø and å are
# letters of their own, so "Ø" only folds to "ø", never to "o".
_FOLD = str.maketrans({"ß": "ss"})


def normalize(value: str) -> str:
    """Lower-case ``value`` and strip combining accents ("Émile" -> "emile", "Øst" -> "øst")."""
    decomposed = unicodedata.normalize("NFD", value.casefold().translate(_FOLD))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch) or ch == "\u030a")
    # Keep å (a + ring above) as one letter.
    return unicodedata.normalize("NFC", stripped)

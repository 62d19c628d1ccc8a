"""The stored forms of a designation's use and of a concept's property values."""

from __future__ import annotations


def split_use(use: str | None) -> tuple[str | None, str | None]:
    if not use:
        return None, None
    system, bar, code = use.rpartition("|")
    if bar:
        return system, code
    if use.isdigit():
        return "http://snomed.info/sct", use
    return None, use


def property_value(value: object) -> tuple[str, str]:
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return str(value), "integer"
    if isinstance(value, float):
        return repr(value), "decimal"
    return str(value), "code"


def typed_value(text: str | None, type_: str) -> tuple[str, object]:
    """A stored property value as a FHIR Parameters ``valueX``."""
    if type_ == "boolean":
        return "valueBoolean", text == "true"
    if type_ == "integer":
        return "valueInteger", int(text or 0)
    if type_ == "decimal":
        return "valueDecimal", float(text or 0)
    if type_ == "string":
        return "valueString", text
    if type_ == "Coding":
        return "valueCoding", {"code": text}
    return "valueCode", text

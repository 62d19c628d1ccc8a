"""Turn a resource into the rows of the search index tables.

``index_resource(resource, parameters)`` evaluates every search parameter of the resource's
type (a platform's ``SearchParameters``, see ``enjournal.fhir.definitions``) and returns, per
kind of row (the search parameter types of ``ROW_COLUMNS``), the rows to store, as tuples in
the column order ``ROW_COLUMNS`` names.  Which tables hold them is the storage's business
(``enjournal.storage.schema``).  What a value of each FHIR type contributes to each parameter
type follows http://hl7.org/fhir/R4/search.html:

* string: string values; HumanName family/given/prefix/suffix/text and the whole name;
  Address line/city/district/state/postalCode/country/text.  ``(param, norm, exact)``.
* token: Coding ``(param, system, code, display)``, CodeableConcept a row per coding plus
  ``(param, None, None, text)``, Identifier ``(param, system, value, type.text)``,
  ContactPoint ``(param, use, value, None)`` (search.html leaves ContactPoint's system to the
  server; its ``use`` is the natural one), code/string/uri/id ``(param, None, value, None)``,
  boolean ``"true"``/``"false"``.  Text columns are normalised.
* reference: ``(param, target_type, target_id, url)``; ``Type/id`` (a ``_history`` suffix is
  dropped) fills type and id, an absolute URL fills url and, if it ends in ``Type/id``, those
  too; canonical/uri values fill url (without ``|version``); contained ``#id`` references are
  not indexed.  A Reference.identifier adds the token row ``(param + ":identifier", system,
  value, None)``.  ``_profile`` gives a reference row (url) as well as a uri row.
* date: ``(param, low, high)`` epoch ms; Period from start's low to end's high (open ends are
  ``MIN_MS``/``MAX_MS``); Timing by its events.
* number: ``(param, low, high, value)`` with the implicit precision range of the decimal.
* quantity: ``(param, system, code, unit, low, high, value)``; Money uses the ISO 4217 system
  with the currency as code and unit; a Range covers ``[low.value, high.value]``.
* uri: ``(param, value)``.
* composite: each element the parameter's expression selects is a group ``grp`` (0, 1, ...);
  each component's values give rows ``(param, grp, comp, system, code, low, high, text)``.

``_id`` and ``_lastUpdated`` are stored with the resource itself and are not indexed here;
parameters of type special or without an expression are skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal
from functools import cache, lru_cache, partial
from typing import Any

from enjournal.fhir.datetime import MAX_MS, MIN_MS, date_range, decimal_range
from enjournal.fhir.definitions import SearchParameters, official_search_parameters
from enjournal.fhir.element_types import is_subtype, resource_type_names
from enjournal.fhir.fhirpath import CompiledPath, compile_path, infer_type, root_keys, split_union
from enjournal.fhir.text import normalize as _normalize

SKIPPED = frozenset({"_id", "_lastUpdated"})
ISO_4217 = "urn:iso:std:iso:4217"
FLOAT_MIN = -sys.float_info.max
FLOAT_MAX = sys.float_info.max

# The kinds of index row (a search parameter type each) and their columns, in the order of
# the tuples ``index_resource`` returns.  ``param`` is the search parameter's code.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "string": ("param", "norm", "exact"),
    "token": ("param", "system", "code", "text"),
    "reference": ("param", "target_type", "target_id", "url"),
    "date": ("param", "low", "high"),
    "number": ("param", "low", "high", "value"),
    "quantity": ("param", "system", "code", "unit", "low", "high", "value"),
    "uri": ("param", "value"),
    "composite": ("param", "grp", "comp", "system", "code", "low", "high", "text"),
}

Rows = dict[str, dict[tuple, None]]

normalize = lru_cache(maxsize=65536)(_normalize)


@lru_cache(maxsize=65536)
def _date(value: str) -> tuple[int, int] | None:
    try:
        return date_range(value)
    except (ValueError, OverflowError):
        return None


def _decimal(value: Any) -> tuple[float, float, float] | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float | Decimal):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    try:
        return decimal_range(text)
    except (ValueError, OverflowError):
        return None


@cache
def _kind(type_code: str) -> str:
    """The broad kind of a FHIR type, for choosing how a value is indexed."""
    if "." in type_code:
        return "backbone"
    for kind in (
        "Quantity", "Coding", "CodeableConcept", "Identifier", "ContactPoint", "Reference",
        "HumanName", "Address", "Period", "Timing", "Range", "Money",
        "boolean", "date", "dateTime", "instant", "decimal", "integer", "canonical", "uri",
        "string",
    ):  # fmt: skip
        if is_subtype(type_code, kind):
            return kind
    if type_code in resource_type_names():
        return "resource"
    return type_code


def _typed(value: Any, type_code: str) -> str:
    kind = _kind(type_code)
    if kind == "?":
        kind = _kind(infer_type(value))
    return kind


# --------------------------------------------------------------------------- string

_NAME_PARTS = ("prefix", "given", "family", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(value: Any, kind: str) -> list[str]:
    if kind == "HumanName":
        out: list[str] = []
        whole: list[str] = []
        for part in _NAME_PARTS:
            v = value.get(part)
            if v is None:
                continue
            vs = v if type(v) is list else [v]
            vs = [x for x in vs if isinstance(x, str)]
            out.extend(vs)
            whole.extend(vs)
        if isinstance(value.get("text"), str):
            out.append(value["text"])
        if len(whole) > 1:
            out.append(" ".join(whole))
        return out
    if kind == "Address":
        out = []
        for part in _ADDRESS_PARTS:
            v = value.get(part)
            if v is None:
                continue
            out.extend(x for x in (v if type(v) is list else [v]) if isinstance(x, str))
        return out
    if isinstance(value, str):
        return [value]
    return []


def _memo(rows: Rows, value: Any, what: str, compute: Callable[[], list]) -> list:
    """Per-resource memo of what a (dict) value yields: several parameters share elements."""
    memo: dict | None = rows.get("_memo")  # type: ignore[assignment]  # the "_memo" entry is not a kind
    if memo is None:
        return compute()
    key = (id(value), what)
    found = memo.get(key)
    if found is None:
        found = memo[key] = compute()
    return found


def _index_string(code: str, value: Any, tp: str, rows: Rows) -> None:
    if type(value) is str:
        if tp != "xhtml":
            rows["string"][(code, normalize(value), value)] = None
        return
    table = rows["string"]
    pairs = _memo(
        rows,
        value,
        "string",
        lambda: [(normalize(s), s) for s in _strings(value, _typed(value, tp))],
    )
    for norm, exact in pairs:
        table[(code, norm, exact)] = None


# --------------------------------------------------------------------------- token


def _opt_norm(value: Any) -> str | None:
    return normalize(value) if isinstance(value, str) and value else None


def _tokens(value: Any, kind: str) -> list[tuple[str | None, str | None, str | None]]:
    if kind == "CodeableConcept":
        out = [
            (c.get("system"), c.get("code"), _opt_norm(c.get("display")))
            for c in value.get("coding", ())
            if type(c) is dict
            and (
                c.get("code") is not None
                or c.get("system") is not None
                or c.get("display") is not None
            )
        ]
        text = value.get("text")
        if isinstance(text, str) and text:
            out.append((None, None, normalize(text)))
        return out
    if kind == "Coding":
        if value.get("code") is None and value.get("system") is None:
            return []
        return [(value.get("system"), value.get("code"), _opt_norm(value.get("display")))]
    if kind == "Identifier":
        type_ = value.get("type")
        text = _opt_norm(type_.get("text")) if type(type_) is dict else None
        if value.get("value") is None and value.get("system") is None:
            return []
        return [(value.get("system"), value.get("value"), text)]
    if kind == "ContactPoint":
        if value.get("value") is None:
            return []
        return [(value.get("use"), value.get("value"), None)]
    if kind == "boolean" or type(value) is bool:
        return [(None, "true" if value else "false", None)]
    if type(value) is str:
        return [(None, value, None)]
    if type(value) in (int, float, Decimal):
        return [(None, str(value), None)]
    return []


def _index_token(code: str, value: Any, tp: str, rows: Rows) -> None:
    table = rows["token"]
    if type(value) is str:
        table[(code, None, value, None)] = None
        return
    if type(value) is dict:
        found = _memo(rows, value, "token", lambda: _tokens(value, _typed(value, tp)))
    else:
        found = _tokens(value, _typed(value, tp))
    for system, token, text in found:
        table[(code, system, token, text)] = None


# --------------------------------------------------------------------------- reference


@lru_cache(maxsize=65536)
def parse_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """``(target_type, target_id, url)`` for a Reference.reference; None for ``#contained``."""
    if not ref or ref.startswith("#"):
        return None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    absolute = ":" in parts[0]
    type_ = id_ = None
    if len(parts) >= 2 and parts[-2] in resource_type_names() and parts[-1]:
        type_, id_ = parts[-2], parts[-1]
    if absolute:
        return type_, id_, ref
    if type_ is None:
        return None, None, ref
    return type_, id_, None


def _index_reference(code: str, value: Any, tp: str, rows: Rows) -> None:
    kind = _typed(value, tp)
    table = rows["reference"]
    if kind == "Reference":
        ref = value.get("reference")
        if isinstance(ref, str):
            parsed = parse_reference(ref)
            if parsed is not None:
                table[(code, *parsed)] = None
        ident = value.get("identifier")
        if type(ident) is dict:
            for system, token, _ in _tokens(ident, "Identifier"):
                rows["token"][(code + ":identifier", system, token, None)] = None
    elif type(value) is str:
        if value.startswith("#"):
            return
        table[(code, None, None, value.split("|", 1)[0])] = None
    elif kind == "resource" and type(value) is dict and value.get("id"):
        table[(code, value["resourceType"], value["id"], None)] = None


# --------------------------------------------------------------------------- date


def _index_date(code: str, value: Any, tp: str, rows: Rows) -> None:
    table = rows["date"]
    if type(value) is str:
        r = _date(value)
        if r is not None:
            table[(code, r[0], r[1])] = None
        return
    kind = _typed(value, tp)
    if kind == "Period":
        start, end = value.get("start"), value.get("end")
        low = _date(start) if isinstance(start, str) else None
        high = _date(end) if isinstance(end, str) else None
        if low is None and high is None:
            return
        table[(code, low[0] if low else MIN_MS, high[1] if high else MAX_MS)] = None
    elif kind == "Timing":
        for event in value.get("event", ()):
            r = _date(event) if isinstance(event, str) else None
            if r is not None:
                table[(code, r[0], r[1])] = None


# --------------------------------------------------------------------------- number/quantity


def _range_bounds(value: dict) -> tuple[dict, float, float, float] | None:
    low, high = value.get("low"), value.get("high")
    lo = _decimal(low.get("value")) if type(low) is dict else None
    hi = _decimal(high.get("value")) if type(high) is dict else None
    if lo is None and hi is None:
        return None
    unit_source = low if lo is not None else high
    return (
        unit_source,
        lo[2] if lo else FLOAT_MIN,
        hi[2] if hi else FLOAT_MAX,
        lo[2] if lo else hi[2],
    )


def _index_number(code: str, value: Any, tp: str, rows: Rows) -> None:
    table = rows["number"]
    r = _decimal(value) if type(value) is not dict else None
    if r is not None:
        table[(code, *r)] = None
        return
    if type(value) is not dict:
        return
    kind = _typed(value, tp)
    if kind == "Range":
        b = _range_bounds(value)
        if b is not None:
            table[(code, b[1], b[2], b[3])] = None
    elif kind in ("Quantity", "Money"):
        r = _decimal(value.get("value"))
        if r is not None:
            table[(code, *r)] = None


def _quantities(value: Any, kind: str) -> list[tuple]:
    """``(system, code, unit, low, high, value)`` for a quantity-like value."""
    if kind == "Quantity":
        r = _decimal(value.get("value"))
        if r is None:
            return []
        return [(value.get("system"), value.get("code"), value.get("unit"), *r)]
    if kind == "Money":
        r = _decimal(value.get("value"))
        if r is None:
            return []
        currency = value.get("currency")
        return [(ISO_4217, currency, currency, *r)]
    if kind == "Range":
        b = _range_bounds(value)
        if b is None:
            return []
        unit = b[0]
        return [(unit.get("system"), unit.get("code"), unit.get("unit"), b[1], b[2], b[3])]
    r = _decimal(value) if type(value) is not dict else None
    return [(None, None, None, *r)] if r else []


def _index_quantity(code: str, value: Any, tp: str, rows: Rows) -> None:
    table = rows["quantity"]
    for q in _quantities(value, _typed(value, tp)):
        table[(code, *q)] = None


# --------------------------------------------------------------------------- uri


def _index_uri(code: str, value: Any, tp: str, rows: Rows) -> None:
    if type(value) is str:
        rows["uri"][(code, value)] = None


# --------------------------------------------------------------------------- composite


def _component_rows(ctype: str, value: Any, tp: str) -> list[tuple]:
    """``(system, code, low, high, text)`` for one component value."""
    kind = _typed(value, tp)
    if ctype == "token":
        return [(s, c, None, None, t) for s, c, t in _tokens(value, kind)]
    if ctype == "quantity":
        return [(q[0], q[1], q[3], q[4], None) for q in _quantities(value, kind)]
    if ctype == "number":
        if kind == "Range" and type(value) is dict:
            b = _range_bounds(value)
            return [(None, None, b[1], b[2], None)] if b else []
        r = _decimal(value.get("value") if type(value) is dict else value)
        return [(None, None, r[0], r[1], None)] if r else []
    if ctype == "date":
        rows: Rows = {"date": {}}
        _index_date("", value, tp, rows)
        return [(None, None, low, high, None) for _, low, high in rows["date"]]
    if ctype == "string":
        return [(None, None, None, None, normalize(s)) for s in _strings(value, kind)]
    if ctype == "reference":
        rows = {"reference": {}, "token": {}}
        _index_reference("", value, tp, rows)
        return [(t, i, None, None, u) for _, t, i, u in rows["reference"]]
    if ctype == "uri" and type(value) is str:
        return [(None, value, None, None, None)]
    return []


def _composite(components: tuple[tuple[int, str, CompiledPath], ...]) -> Callable:
    def index(code: str, value: Any, tp: str, rows: Rows, resource: dict, grp: int) -> None:
        values = []
        for _, _, path in components:
            found = path.evaluate(value, tp, resource)
            if not found:
                return  # a group missing a component can never match a composite search
            values.append(found)
        out: list[tuple] = []
        for (comp, ctype, _), items in zip(components, values, strict=True):
            before = len(out)
            for v, t in items:
                if type(v) is dict:
                    parts = _memo(rows, v, "c" + ctype, partial(_component_rows, ctype, v, t))
                else:
                    parts = _component_rows(ctype, v, t)
                for system, token, low, high, text in parts:
                    out.append((code, grp, comp, system, token, low, high, text))
            if len(out) == before:
                return
        table = rows["composite"]
        for row in out:
            table[row] = None

    return index


# --------------------------------------------------------------------------- driver

_INDEXERS: dict[str, Callable[[str, Any, str, Rows], None]] = {
    "string": _index_string,
    "token": _index_token,
    "reference": _index_reference,
    "date": _index_date,
    "number": _index_number,
    "quantity": _index_quantity,
    "uri": _index_uri,
}


Check = tuple[frozenset[str], tuple[frozenset[str], ...] | None] | None


def _check(resource_type: str, expression: str, components: tuple = ()) -> Check:
    """When the resource cannot have a value for the parameter: ``(keys, all_of)`` means
    "skip unless one of ``keys`` is present, or every set in ``all_of`` meets the resource"."""
    if not components:
        keys = root_keys(expression, resource_type)
        return None if keys is None else (keys, None)
    any_keys: set[str] = set()
    all_of = None
    for part in split_union(expression):
        keys = root_keys(part, resource_type)
        if keys is not None:
            any_keys |= keys
        elif part.strip("() ") in (resource_type, "Resource", "DomainResource"):
            # the resource itself is a group: it has values only if every component has some
            all_of = tuple(root_keys(c.expression, resource_type) for c in components)
            if any(k is None for k in all_of):
                return None
        else:
            return None
    return frozenset(any_keys), all_of


Param = tuple[str, str, CompiledPath, Any, Check]


def compiled_parameters(
    resource_type: str, parameters: SearchParameters | None = None
) -> tuple[Param, ...]:
    """``(code, type, path, indexer, check)`` for each indexed search parameter of the type
    (``parameters``: the platform's; None: the official R4 ones), compiled once per set."""
    parameters = parameters or official_search_parameters()
    return parameters.memo(("index", resource_type), lambda: _compile(resource_type, parameters))


def _compile(resource_type: str, parameters: SearchParameters) -> tuple[Param, ...]:
    out = []
    for code, param in parameters.of(resource_type).items():
        if code in SKIPPED or not param.expression or param.type == "special":
            continue
        path = compile_path(param.expression)
        if param.type == "composite":
            components = tuple(
                (i, c.type, compile_path(c.expression)) for i, c in enumerate(param.component)
            )
            check = _check(resource_type, param.expression, param.component)
            out.append((code, "composite", path, _composite(components), check))
        elif param.type in _INDEXERS:
            check = _check(resource_type, param.expression)
            out.append((code, param.type, path, _INDEXERS[param.type], check))
    return tuple(out)


def _dispatch(
    resource_type: str, parameters: SearchParameters
) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """Top-level key -> the parameters (by position) that may have values when it is present,
    and the parameters to try whatever the resource holds."""
    return parameters.memo(
        ("dispatch", resource_type), lambda: _dispatch_table(resource_type, parameters)
    )


def _dispatch_table(
    resource_type: str, parameters: SearchParameters
) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    params = compiled_parameters(resource_type, parameters)
    by_key: dict[str, list[int]] = {}
    always: list[int] = []
    for i, (_, _, _, _, check) in enumerate(params):
        if check is None:
            always.append(i)
            continue
        keys, all_of = check
        for key in keys:
            by_key.setdefault(key, []).append(i)
        if all_of is not None:
            # evaluated when one key of the first set is present; the rest is checked there
            for key in all_of[0]:
                by_key.setdefault(key, []).append(i)
    return {k: tuple(v) for k, v in by_key.items()}, tuple(always)


def index_resource(
    resource: dict, parameters: SearchParameters | None = None
) -> dict[str, list[tuple]]:
    """The index rows of ``resource`` by ``parameters`` (the platform's; None: the official
    R4 ones): kind of row -> deduplicated rows, in the column order of ``ROW_COLUMNS``.
    Every kind is present, maybe empty."""
    rows: Rows = {kind: {} for kind in ROW_COLUMNS}
    rows["_memo"] = {}
    resource_type = resource.get("resourceType")
    if not resource_type:
        raise ValueError("resource without resourceType")
    parameters = parameters or official_search_parameters()
    params = compiled_parameters(resource_type, parameters)
    by_key, always = _dispatch(resource_type, parameters)
    selected = set(always)
    for key in resource:
        found = by_key.get(key)
        if found:
            selected.update(found)
    for i in sorted(selected):
        code, ptype, path, indexer, check = params[i]
        if (
            check is not None
            and check[1] is not None
            and check[0].isdisjoint(resource)
            and any(k.isdisjoint(resource) for k in check[1])
        ):
            continue
        try:
            items = path(resource)
        except (TypeError, AttributeError, ValueError):
            continue
        if not items:
            continue
        # The resource is validated before it is indexed; a malformed value that got this far
        # is skipped rather than failing the write.
        if ptype == "composite":
            for grp, (value, tp) in enumerate(items):
                try:
                    indexer(code, value, tp, rows, resource, grp)
                except (TypeError, AttributeError, ValueError):
                    continue
            continue
        for value, tp in items:
            try:
                indexer(code, value, tp, rows)
            except (TypeError, AttributeError, ValueError):
                continue
        if code == "_profile":
            for value, _tp in items:
                if type(value) is str:
                    rows["reference"][(code, None, None, value.split("|", 1)[0])] = None
    del rows["_memo"]
    return {kind: list(found) for kind, found in rows.items()}


class Indexer:
    """The store's indexer for one platform: ``indexer(resource)`` is
    ``index_resource(resource, parameters)``."""

    def __init__(self, parameters: SearchParameters):
        self.parameters = parameters

    def __call__(self, resource: dict) -> dict[str, list[tuple]]:
        return index_resource(resource, self.parameters)


__all__ = ["ROW_COLUMNS", "Indexer", "compiled_parameters", "index_resource", "parse_reference"]


def referenced_patients(
    resource: dict, codes: frozenset[str], parameters: SearchParameters | None = None
) -> list[str]:
    """Ids of the Patients that the reference parameters ``codes`` of ``resource`` point at:
    whose compartment the resource is in, found without indexing the whole resource."""
    rows: Rows = {kind: {} for kind in ROW_COLUMNS}
    rows["_memo"] = {}
    compiled = compiled_parameters(resource["resourceType"], parameters)
    for code, ptype, path, indexer, _check in compiled:
        if code not in codes or ptype != "reference":
            continue
        try:
            for value, tp in path(resource):
                indexer(code, value, tp, rows)
        except (TypeError, AttributeError, ValueError):
            continue
    return sorted({row[2] for row in rows["reference"] if row[1] == "Patient" and row[2]})

"""Parse FHIR search parameters into a ``SearchQuery`` (pure: no I/O).

See http://hl7.org/fhir/R4/search.html.  Values are validated here, so a bad date, number or
prefix is an ``Invalid`` error (400) whatever the strictness; *unknown or unsupported
parameters* raise ``Invalid`` when ``strict`` (``Prefer: handling=strict``) and are otherwise
collected in ``query.ignored`` for the server to report.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation

from enjournal.fhir.datetime import date_range, decimal_range
from enjournal.fhir.definitions import (
    SearchParam,
    SearchParameters,
    official_search_parameters,
    resource_types,
)
from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.fhir.jsonio import forbidden_character
from enjournal.fhir.search.query import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    Term,
    TokenValue,
    UriValue,
    Value,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "above", "below"},
    "composite": {"missing"},
}
SORTABLE = {"string", "token", "reference", "date", "number", "quantity", "uri"}
UNSUPPORTED_MODIFIERS = {"in", "not-in", "above", "below", "of-type", "type", "code-text"}

# Result parameters and parameters this server knows but does not implement.
_IGNORED_SILENTLY = {"_format", "_pretty"}
_UNSUPPORTED = {"_text", "_content", "_list", "_query", "_filter", "_contained", "_containedType"}
_SUMMARY = {"true", "text", "data", "count", "false"}
_TOTAL = {"none", "estimate", "accurate"}
MAX_CHAIN_DEPTH = 4
# Bounds on the work one search may ask for (docs/architecture.md, Limits): each parameter
# becomes a subquery and each value SQL arguments (SQLite allows 32,766 per statement), and
# PostgreSQL's time grows faster than linearly with the subqueries (30 criteria that each
# match 2,000 resources: about 1 s; 50: over 5 s).  Clients need about 10; the statement
# timeout (Settings.read_timeout_ms) bounds what still gets through.
MAX_PARAMETERS = 30  # (name, value) pairs in one search
MAX_VALUES = 100  # comma-separated alternatives of one parameter
MAX_TOTAL_VALUES = 300  # alternatives of all parameters together
MAX_VALUE_CHARS = 2048  # one value, before splitting on commas
MAX_SORT_KEYS = 8  # each is a subquery per matching resource
_ESCAPED = re.compile(r"\\(.)")


def _in_range(text: str) -> bool:
    """Whether ``text`` is a decimal a double holds with its precision range: at most 64
    characters, an exponent within ±400 and a magnitude within 1e-300..1e300 (or zero).
    Checked before any arithmetic, which for ``0e99999999`` would build a huge integer."""
    if len(text) > 64:
        return False
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return True  # not a number at all: decimal_range says so
    if not number.is_finite() or abs(number.as_tuple().exponent) > 400:  # type: ignore[arg-type]
        return False
    return number.is_zero() or Decimal("1e-300") < abs(number) < Decimal("1e300")


class _Skip(Exception):
    """A parameter that is unknown or unsupported: ignored, or Invalid when strict."""


def split_unescaped(value: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split ``value`` on ``sep`` not preceded by a backslash; escapes are kept."""
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep and maxsplit != 0:
            parts.append("".join(cur))
            cur = []
            maxsplit -= 1
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    return _ESCAPED.sub(r"\1", value)


def parse_search(
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
    parameters: SearchParameters | None = None,
) -> SearchQuery:
    """Parse the (name, value) pairs of a search on ``resource_type`` (None: all types).

    ``compartment`` (e.g. ``("Patient", "123")``) restricts the search to that compartment.
    ``parameters`` are the search parameters known: the store's (``tx.search_parameters``,
    the official ones plus the platform's services'); None: the official R4 ones alone.
    """
    if resource_type is not None and resource_type not in resource_types():
        raise NotSupported(f"unknown resource type {resource_type!r}")
    parameters = parameters or official_search_parameters()
    query = _Parser(resource_type, strict, parameters).run(params)
    if compartment is not None:
        if compartment[0] != "Patient":
            raise NotSupported(f"the {compartment[0]} compartment is not supported")
        query.compartment = compartment
    return query


def _check_size(params: list[tuple[str, str]]) -> None:
    """Invalid for a search larger than the limits above, or holding a character no FHIR
    value has (a C0 control other than tab, CR, LF, or a lone surrogate)."""
    if len(params) > MAX_PARAMETERS:
        raise Invalid(f"a search takes at most {MAX_PARAMETERS} parameters, not {len(params)}")
    total = 0
    for name, value in params:
        if len(value) > MAX_VALUE_CHARS or len(name) > MAX_VALUE_CHARS:
            raise Invalid(f"{name[:64]}: a search value has at most {MAX_VALUE_CHARS} characters")
        found = forbidden_character(name + value)
        if found is not None:
            raise Invalid(f"a search parameter holds the forbidden character {found}")
        total += value.count(",") + 1
    if total > MAX_TOTAL_VALUES:
        raise Invalid(f"a search takes at most {MAX_TOTAL_VALUES} values in all, not {total}")


class _Parser:
    def __init__(self, resource_type: str | None, strict: bool, parameters: SearchParameters):
        self.rtype = resource_type
        self.strict = strict
        self.parameters = parameters
        self.query = SearchQuery(resource_type)

    # -- driver ---------------------------------------------------------------------------

    def run(self, params: list[tuple[str, str]]) -> SearchQuery:
        q = self.query
        _check_size(params)
        params = list(dict.fromkeys(params))  # a repeated criterion adds work, not meaning
        for name, value in params:
            if name == "_type" and self.rtype is None:
                types = tuple(t.strip() for t in value.split(",") if t.strip())
                for t in types:
                    if t not in resource_types():
                        raise Invalid(f"_type: unknown resource type {t!r}", expression="_type")
                q.types = tuple(dict.fromkeys(q.types + types))
                q.applied.append((name, value))
        for name, value in params:
            if name == "_type" and self.rtype is None:
                continue
            try:
                self._one(name, value)
            except _Skip as skip:
                if self.strict:
                    raise Invalid(f"{name}: {skip}", expression=name) from None
                q.ignored.append((name, value, str(skip)))
        return q

    def _one(self, name: str, value: str) -> None:
        q = self.query
        if name in _IGNORED_SILENTLY:
            return
        if name == "_cursor":
            q.cursor = value
            return
        if name == "_count":
            try:
                count = int(value)
            except ValueError:
                raise Invalid(f"_count must be an integer, not {value!r}") from None
            if count < 0:
                raise Invalid("_count must not be negative")
            q.count = min(count, MAX_COUNT)
            self._applied("_count", str(q.count))
            return
        if name == "_summary":
            if value not in _SUMMARY:
                raise Invalid(f"_summary must be one of {sorted(_SUMMARY)}, not {value!r}")
            q.summary = value
            self._applied(name, value)
            return
        if name == "_total":
            if value not in _TOTAL:
                raise Invalid(f"_total must be one of {sorted(_TOTAL)}, not {value!r}")
            q.total = value
            self._applied(name, value)
            return
        if name == "_elements":
            q.elements = tuple(
                dict.fromkeys(q.elements + tuple(e.strip() for e in value.split(",") if e.strip()))
            )
            self._applied(name, value)
            return
        if name == "_sort":
            self._sort(value)
            self._applied(name, value)
            return
        base, _, modifier = name.partition(":")
        if base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise Invalid(f"{name}: unknown modifier {modifier!r}")
            self._include(value, reverse=base == "_revinclude", iterate=bool(modifier))
            self._applied(name, value)
            return
        if value == "":
            return  # an empty parameter is ignored (search.html#errors)
        if base in _UNSUPPORTED:
            raise _Skip("parameter not supported")
        term = self._term(self.rtype, name, value, 0)
        q.criteria.append(term)
        self._applied(name, value)

    def _applied(self, name: str, value: str) -> None:
        self.query.applied.append((name, value))

    # -- parameters -----------------------------------------------------------------------

    def _lookup(self, rtype: str | None, code: str) -> SearchParam:
        if rtype is not None:
            sp = self.parameters.of(rtype).get(code)
        else:
            types = self.query.types or ("Resource",)
            found = [self.parameters.of(t).get(code) for t in types]
            sp = found[0] if all(f and f.type == found[0].type for f in found) else None
        if sp is None:
            raise _Skip(f"unknown search parameter for {rtype or 'a system-wide search'}")
        if code in ("_id", "_lastUpdated"):
            return sp
        if sp.type == "special" or sp.expression is None:
            raise _Skip("parameter not supported")
        return sp

    def _term(self, rtype: str | None, name: str, value: str, depth: int) -> Term:
        if depth > MAX_CHAIN_DEPTH:
            raise Invalid(f"{name}: chains are limited to {MAX_CHAIN_DEPTH} levels")
        if name.startswith("_has:"):
            return self._has(rtype, name, value, depth)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        if dot:
            return self._chain(rtype, code, modifier, rest, value, depth)
        sp = self._lookup(rtype, code)
        return self._criterion(rtype, sp, modifier or None, value)

    def _has(self, rtype: str | None, name: str, value: str, depth: int) -> Has:
        parts = name.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise Invalid(f"{name}: expected _has:Type:reference-parameter:parameter")
        if rtype is None:
            raise _Skip("_has needs a resource type")
        _, source, ref_param, rest = parts
        if source not in resource_types():
            raise Invalid(f"{name}: unknown resource type {source!r}")
        sp = self._lookup(source, ref_param)
        if sp.type != "reference":
            raise Invalid(f"{name}: {source}.{ref_param} is not a reference parameter")
        if sp.target and rtype not in sp.target:
            raise Invalid(f"{name}: {source}.{ref_param} cannot refer to {rtype}")
        return Has(source, ref_param, self._term(source, rest, value, depth + 1))

    def _chain(
        self, rtype: str | None, code: str, modifier: str, rest: str, value: str, depth: int
    ) -> Chain:
        sp = self._lookup(rtype, code)
        if sp.type != "reference":
            raise Invalid(f"{code}: chaining needs a reference parameter, {code} is {sp.type}")
        if modifier:
            if modifier not in resource_types():
                raise Invalid(f"{code}:{modifier}: chaining takes a resource type modifier")
            if sp.target and modifier not in sp.target:
                raise Invalid(f"{code}: cannot refer to {modifier}")
            target = modifier
        else:
            inner_code = rest.split(".", 1)[0].split(":", 1)[0]
            candidates = [t for t in sp.target if inner_code in self.parameters.of(t)]
            if inner_code.startswith("_has"):
                candidates = list(sp.target)
            if len(candidates) != 1:
                if not candidates:
                    raise _Skip(f"no target type of {code} has a parameter {inner_code!r}")
                raise Invalid(
                    f"{code}.{rest}: the target type is ambiguous ({', '.join(candidates)}); "
                    f"name it, e.g. {code}:{candidates[0]}.{rest}"
                )
            target = candidates[0]
        return Chain(code, target, self._term(target, rest, value, depth + 1))

    def _criterion(self, rtype: str | None, sp: SearchParam, modifier: str | None, value: str):
        ptype, code = sp.type, sp.code
        # _id and _lastUpdated are the resource's own id and time, not index rows
        own = code in ("_id", "_lastUpdated")
        if modifier is not None:
            if modifier == "missing":
                if value not in ("true", "false"):
                    raise Invalid(f"{code}:missing must be true or false, not {value!r}")
                if own:
                    return Criterion(code, ptype, code, None, (), value == "true", own)
                return Criterion(code, ptype, code, "missing", (), value == "true")
            if ptype == "reference" and modifier in resource_types():
                if sp.target and modifier not in sp.target:
                    raise Invalid(f"{code}: cannot refer to {modifier}")
                values = tuple(
                    self._reference(code, v, sp, forced=modifier) for v in self._ors(value)
                )
                return Criterion(code, ptype, code, None, values)
            if modifier not in MODIFIERS.get(ptype, ()) or (own and modifier != "not"):
                if modifier in UNSUPPORTED_MODIFIERS:
                    raise NotSupported(f"{code}: the :{modifier} modifier is not supported")
                raise Invalid(f"{code}: unknown modifier :{modifier} for a {ptype} parameter")
        if code == "_id":
            values = tuple(StringValue(unescape(v)) for v in self._ors(value))
            return Criterion(code, "token", code, modifier, values, on_resource=True)
        if ptype == "reference" and modifier == "identifier":
            # a Reference.identifier is indexed as token rows named <param>:identifier
            values = tuple(self._token(code, v) for v in self._ors(value))
            return Criterion(code, "token", f"{code}:identifier", None, values)
        if ptype == "token" and modifier == "text":
            values = tuple(StringValue(unescape(v)) for v in self._ors(value))
            return Criterion(code, ptype, code, modifier, values)
        parse = {
            "string": lambda v: StringValue(unescape(v)),
            "token": lambda v: self._token(code, v),
            "reference": lambda v: self._reference(code, v, sp),
            "date": lambda v: self._date(code, v),
            "number": lambda v: self._number(code, v),
            "quantity": lambda v: self._quantity(code, v),
            "uri": lambda v: UriValue(unescape(v)),
            "composite": lambda v: self._composite(rtype, sp, v),
        }.get(ptype)
        if parse is None:
            raise _Skip(f"{ptype} parameters are not supported")
        values = tuple(parse(v) for v in self._ors(value))
        return Criterion(code, ptype, code, modifier, values, on_resource=own)

    @staticmethod
    def _ors(value: str) -> list[str]:
        parts = [p for p in split_unescaped(value, ",") if p != ""]
        if not parts:
            raise Invalid(f"empty search value {value!r}")
        if len(parts) > MAX_VALUES:
            raise Invalid(f"a search parameter takes at most {MAX_VALUES} values, not {len(parts)}")
        return parts

    # -- values ---------------------------------------------------------------------------

    @staticmethod
    def _token(code: str, raw: str) -> TokenValue:
        parts = split_unescaped(raw, "|", 1)
        if len(parts) == 1:
            return TokenValue(None, unescape(parts[0]))
        system, tcode = unescape(parts[0]), unescape(parts[1])
        if not system and not tcode:
            raise Invalid(f"{code}: empty token {raw!r}")
        return TokenValue(system, tcode or None)

    @staticmethod
    def _reference(code: str, raw: str, sp: SearchParam, forced: str | None = None):
        value = unescape(raw)
        if "://" in value or value.startswith("urn:"):
            if forced:
                return ReferenceValue(forced, value.rstrip("/").rsplit("/", 1)[-1])
            return ReferenceValue(url=value)
        if "/_history/" in value:
            value = value.split("/_history/", 1)[0]
        if "/" in value:
            rtype, _, rid = value.rpartition("/")
            rtype = rtype.rsplit("/", 1)[-1]
            if rtype not in resource_types():
                raise Invalid(f"{code}: {rtype!r} is not a resource type in {raw!r}")
            if forced and forced != rtype:
                raise Invalid(f"{code}:{forced}: {raw!r} is not a {forced} reference")
            if sp.target and rtype not in sp.target:
                raise Invalid(f"{code}: cannot refer to {rtype}")
            return ReferenceValue(rtype, rid)
        return ReferenceValue(forced, value)

    @staticmethod
    def _prefix(code: str, raw: str) -> tuple[str, str]:
        if len(raw) > 2 and raw[:2].isalpha() and raw[:2].islower():
            if raw[:2] not in PREFIXES:
                raise Invalid(f"{code}: unknown prefix {raw[:2]!r} in {raw!r}")
            return raw[:2], raw[2:]
        return "eq", raw

    def _date(self, code: str, raw: str) -> DateValue:
        prefix, text = self._prefix(code, unescape(raw))
        try:
            low, high = date_range(text.replace(" ", "+"))
        except (ValueError, OverflowError):
            raise Invalid(f"{code}: {raw!r} is not a valid date/dateTime") from None
        if prefix == "ap":
            now = int(time.time() * 1000)
            margin = max(int(0.1 * abs(now - (low + high) // 2)), 0)
            low, high = low - margin, high + margin
        return DateValue(prefix, low, high)

    def _decimal(self, code: str, raw: str) -> tuple[str, float, float, float]:
        prefix, text = self._prefix(code, raw)
        if not _in_range(text):
            raise Invalid(f"{code}: {raw[:64]!r} is not a number within the supported range")
        try:
            low, high, value = decimal_range(text)
        except (ValueError, OverflowError):
            raise Invalid(f"{code}: {raw!r} is not a valid number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"{code}: {raw!r} is not a valid number")
        if prefix == "ap":
            margin = abs(value) * 0.1
            low, high = min(low, value - margin), max(high, value + margin)
        return prefix, low, high, value

    def _number(self, code: str, raw: str) -> NumberValue:
        return NumberValue(*self._decimal(code, unescape(raw)))

    def _quantity(self, code: str, raw: str) -> QuantityValue:
        parts = split_unescaped(raw, "|", 2)
        prefix, low, high, value = self._decimal(code, unescape(parts[0]))
        system = unescape(parts[1]) if len(parts) > 1 and parts[1] else None
        unit = unescape(parts[2]) if len(parts) > 2 and parts[2] else None
        if system and not unit:
            raise Invalid(f"{code}: {raw!r} names a system without a unit code")
        return QuantityValue(prefix, low, high, value, system, unit)

    def _composite(self, rtype: str | None, sp: SearchParam, raw: str) -> CompositeValue:
        parts = split_unescaped(raw, "$")
        if len(parts) != len(sp.component):
            raise Invalid(
                f"{sp.code}: expected {len(sp.component)} components separated by $, got {raw!r}"
            )
        values: list[Value] = []
        types: list[str] = []
        for comp, part in zip(sp.component, parts, strict=True):
            ctype = comp.type
            if ctype == "token":
                values.append(self._token(sp.code, part))
            elif ctype == "quantity":
                values.append(self._quantity(sp.code, part))
            elif ctype == "number":
                values.append(self._number(sp.code, part))
            elif ctype == "date":
                values.append(self._date(sp.code, part))
            elif ctype == "string":
                values.append(StringValue(unescape(part)))
            elif ctype == "uri":
                values.append(UriValue(unescape(part)))
            elif ctype == "reference":
                values.append(self._reference(sp.code, part, sp))
            else:
                raise _Skip(f"composite component type {ctype} is not supported")
            types.append(ctype)
        return CompositeValue(tuple(values), tuple(types))

    # -- result parameters ----------------------------------------------------------------

    def _sort(self, value: str) -> None:
        keys: list[SortKey] = []
        for raw in value.split(","):
            raw = raw.strip()
            if not raw:
                continue
            desc = raw.startswith("-")
            code = raw.lstrip("-")
            if code in ("_id", "_lastUpdated"):
                keys.append(SortKey(code, code, desc))
                continue
            sp = self._lookup(self.rtype, code)
            if sp.type not in SORTABLE:
                raise _Skip(f"cannot sort on {sp.type} parameter {code}")
            keys.append(SortKey(code, sp.type, desc))
        if len(keys) > MAX_SORT_KEYS:
            raise Invalid(f"_sort takes at most {MAX_SORT_KEYS} keys, not {len(keys)}")
        self.query.sort = keys

    def _include(self, value: str, *, reverse: bool, iterate: bool) -> None:
        name = "_revinclude" if reverse else "_include"
        if value == "*":
            # On a system-wide search (rtype None) this follows references of every match.
            source = None if reverse else self.rtype
            self.query.includes.append(Include(source, None, None, reverse, iterate))
            return
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise Invalid(f"{name}: expected Type:parameter[:targetType], got {value!r}")
        source, param = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if source not in resource_types():
            raise Invalid(f"{name}: unknown resource type {source!r}")
        if target is not None and target not in resource_types():
            raise Invalid(f"{name}: unknown target type {target!r}")
        if param == "*":
            self.query.includes.append(Include(source, None, target, reverse, iterate))
            return
        sp = self.parameters.of(source).get(param)
        if sp is None or sp.type != "reference":
            raise Invalid(f"{name}: {source}.{param} is not a reference search parameter")
        if target and sp.target and target not in sp.target:
            raise Invalid(f"{name}: {source}.{param} cannot refer to {target}")
        if (
            not iterate
            and not reverse
            and self.rtype is not None
            and source != self.rtype
            and source not in self.query.types
        ):
            raise _Skip(f"{source} is not the type searched; use _include:iterate")
        self.query.includes.append(Include(source, param, target, reverse, iterate, sp.target))


__all__ = ["DEFAULT_COUNT", "parse_search", "split_unescaped", "unescape"]

"""A ValueSet's ``compose`` compiled to one SQL statement over the concept tables
(includes UNION-ed, excludes EXCEPT-ed), so an is-a filter over SNOMED CT never loads the
hierarchy."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from enjournal.fhir.errors import Invalid, NotFound
from enjournal.fhir.text import normalize
from enjournal.storage.terminology.code_systems import CodeSystemInfo, require_code_system
from enjournal.storage.terminology.loading import WORD

_TOP = "\U0010ffff"  # the largest code point: word < prefix + _TOP is a prefix range


class Compiler:
    """A ValueSet's ``compose`` as one SQL statement over the concept tables, yielding
    (cs, code) rows; ``find_value_set(tx, url)`` resolves the value sets it includes."""

    def __init__(
        self,
        tx,
        *,
        filter_text: str | None,
        active_only: bool,
        code: str | None,
        find_value_set: Callable[[Any, str], Awaitable[dict | None]],
    ):
        self.tx = tx
        self._conn = tx._conn
        self.find_value_set = find_value_set
        self.systems: dict[int, CodeSystemInfo] = {}
        self.tokens = _filter_tokens(filter_text) if filter_text else []
        self.active_only = active_only
        self.code = code  # restrict every leaf to this code ($validate-code)
        self.depth = 0
        if self._conn.dialect == "sqlite":
            _sqlite_regexp(self._conn)

    async def compose(self, vs: dict) -> tuple[str, list]:
        compose = vs.get("compose")
        if not isinstance(compose, dict) or not compose.get("include"):
            raise Invalid(f"the value set {vs.get('url') or vs.get('id')} has no compose.include")
        self.depth += 1
        if self.depth > 8:
            raise Invalid("value sets nest too deeply (or include each other)")
        sql, args = [], []
        for inc in compose["include"]:
            s, a = await self.include(inc)
            sql.append(s)
            args.extend(a)
        text = " UNION ".join(sql)
        for exc in compose.get("exclude", []):
            s, a = await self.include(exc)
            text += " EXCEPT " + s
            args.extend(a)
        self.depth -= 1
        return text, args

    async def include(self, inc: dict) -> tuple[str, list]:
        value_sets = inc.get("valueSet") or []
        nested = []
        for url in value_sets:
            vs = await self.find_value_set(self.tx, url)
            if vs is None:
                raise NotFound(f"the value set {url} is not known to this server")
            nested.append(await self.compose(vs))
        system = inc.get("system")
        if system is None:
            if not nested:
                raise Invalid("a compose include needs a system or a valueSet")
            parts = [f"SELECT cs, code FROM ({s}) v{i}" for i, (s, _) in enumerate(nested)]
            return " INTERSECT ".join(parts), [a for _, args in nested for a in args]
        info = await require_code_system(self.tx, system, inc.get("version"))
        self.systems[info.id] = info
        where, args = ["cs = ?"], [info.id]  # type: list[str], list[object]
        concepts = inc.get("concept")
        if concepts:
            codes = [c["code"] for c in concepts if isinstance(c, dict) and c.get("code")]
            where.append(f"code IN ({', '.join('?' for _ in codes)})")
            args.extend(codes)
        for f in inc.get("filter") or []:
            self.filter(info, f, where, args)
        if self.code is not None:
            where.append("code = ?")
            args.append(self.code)
        if self.active_only:
            where.append("inactive = ?")
            args.append(False)
        if self.tokens:
            self.text(info, where, args)
        sql = f"SELECT cs, code FROM tx_concepts WHERE {' AND '.join(where)}"
        for i, (s, a) in enumerate(nested):
            sql += f" AND (cs, code) IN (SELECT cs, code FROM ({s}) n{i})"
            args.extend(a)
        return sql, args

    def text(self, info: CodeSystemInfo, where: list, args: list) -> None:
        """Every token a prefix of one of the concept's words (or of its code); a token
        with punctuation ("type-2") also matches when each of its pieces does.  One set of
        codes (INTERSECT of the tokens' word ranges), so the database drives from it."""
        words = "SELECT code FROM tx_words WHERE cs = ? AND word >= ? AND word < ?"
        sets = []
        for token in self.tokens:
            pieces = WORD.findall(token)
            args.extend((info.id, token, token + _TOP))
            if pieces and pieces != [token]:
                every = " INTERSECT ".join(words for _ in pieces)
                sets.append(f"SELECT code FROM ({words} UNION SELECT code FROM ({every}) p) t")
                for piece in pieces:
                    args.extend((info.id, piece, piece + _TOP))
            else:
                sets.append(words)
        where.append(f"code IN ({' INTERSECT '.join(sets)})")

    def filter(self, info: CodeSystemInfo, f: dict, where: list, args: list) -> None:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not prop or not op or value is None:
            raise Invalid("a value set filter needs property, op and value")
        cs = info.id
        closure_down = "code IN (SELECT descendant FROM tx_closure WHERE cs = ? AND ancestor = ?)"
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
            if op == "generalizes":
                where.append(
                    "code IN (SELECT ancestor FROM tx_closure WHERE cs = ? AND descendant = ?)"
                )
            else:
                where.append(("NOT " if op == "is-not-a" else "") + closure_down)
            args.extend((cs, value))
            if op == "descendent-of":
                where.append("code <> ?")
                args.append(value)
            return
        if op in ("=", "in", "not-in"):
            values = [value] if op == "=" else [v.strip() for v in value.split(",") if v.strip()]
            marks = ", ".join("?" for _ in values)
            negate = "NOT " if op == "not-in" else ""
            if prop == "code":
                where.append(f"code {negate}IN ({marks})")
                args.extend(values)
            elif prop == "display":
                where.append(f"display {negate}IN ({marks})")
                args.extend(values)
            elif prop == "inactive":
                where.append("inactive = ?")
                args.append(value.lower() == "true")
            elif prop == "parent":
                where.append(
                    f"code {negate}IN (SELECT child FROM tx_parents WHERE cs = ? "
                    f"AND parent IN ({marks}))"
                )
                args.extend((cs, *values))
            elif prop == "child":
                where.append(
                    f"code {negate}IN (SELECT parent FROM tx_parents WHERE cs = ? "
                    f"AND child IN ({marks}))"
                )
                args.extend((cs, *values))
            else:
                where.append(
                    f"code {negate}IN (SELECT code FROM tx_properties WHERE cs = ? "
                    f"AND property = ? AND value IN ({marks}))"
                )
                args.extend((cs, prop, *values))
            return
        if op == "regex":
            try:
                re.compile(value)
            except re.error as error:
                raise Invalid(f"bad regex {value!r} in a value set filter: {error}") from None
            match = "REGEXP ?" if self._conn.dialect == "sqlite" else "~ ?"
            pattern = f"^(?:{value})$"
            if prop in ("code", "display"):
                where.append(f"{prop} {match}")
                args.append(pattern)
            else:
                where.append(
                    "code IN (SELECT code FROM tx_properties WHERE cs = ? AND property = ? "
                    f"AND value {match})"
                )
                args.extend((cs, prop, pattern))
            return
        if op == "exists":
            negate = "" if str(value).lower() == "true" else "NOT "
            where.append(
                f"code {negate}IN (SELECT code FROM tx_properties WHERE cs = ? AND property = ?)"
            )
            args.extend((cs, prop))
            return
        raise Invalid(f"unsupported value set filter op {op!r}")


def _filter_tokens(text: str) -> list[str]:
    return [t for t in normalize(text).split() if t][:8]


def _regexp(pattern: str, value: object) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def _sqlite_regexp(conn) -> None:
    raw = getattr(conn, "raw", None)
    if raw is not None:
        raw.create_function("regexp", 2, _regexp, deterministic=True)

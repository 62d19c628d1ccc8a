"""Web sessions: kept on the server, named by a random id in a cookie.

The cookie holds nothing but that id (HttpOnly, Secure, SameSite=Lax, the site's path), so
logging out really ends a session: the id is forgotten, and a copied cookie is worth nothing
afterwards.  A session ends after ``idle`` seconds without a request, and at the latest when
the login's refresh grant ends.  One worker keeps sessions in memory; several share them in
Redis (``ENJOURNAL_REDIS_URL``), so any worker serves any request.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import orjson

ANONYMOUS_SECONDS = 600.0
DEFAULT_LANG = "nb"


@dataclass
class Session:
    id: str
    csrf: str  # the token every form carries (synchroniser token)
    created: float
    seen: float
    lang: str = DEFAULT_LANG
    access_token: str | None = None
    refresh_token: str | None = None
    token_expires: float = 0.0
    ends: float = 0.0  # when the login's refresh grant ends
    name: str | None = None  # the user's name, for the header
    login: dict[str, str] = field(default_factory=dict)  # state, nonce, PKCE verifier
    flash: str | None = None  # one message for the next page
    data: dict[str, Any] = field(default_factory=dict)  # the service's own (JSON) values

    @property
    def logged_in(self) -> bool:
        return self.access_token is not None

    @property
    def worth_keeping(self) -> bool:
        """Whether to store it: an anonymous visit that chose nothing is not kept, so
        requests without a cookie cannot fill the store."""
        chose = self.lang != DEFAULT_LANG or bool(self.flash)
        return self.logged_in or bool(self.login) or chose


def new_session(lang: str = DEFAULT_LANG, now: float | None = None) -> Session:
    now = time.time() if now is None else now
    return Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, lang)


class Sessions(Protocol):
    idle: float

    async def get(self, id_: str) -> Session | None: ...
    async def put(self, session: Session) -> None: ...
    async def drop(self, id_: str) -> None: ...


class MemorySessions:
    """One worker's sessions, least recently used first.  Logged-in sessions and those not
    (yet) logged in are kept apart, each bounded: anonymous requests can push out only
    other anonymous sessions, never a user who is logged in."""

    def __init__(
        self, idle: float = 1800.0, max_sessions: int = 100_000, max_anonymous: int = 10_000
    ):
        self.idle = idle
        self._pools = {True: _Pool(max_sessions), False: _Pool(max_anonymous)}

    async def get(self, id_: str) -> Session | None:
        for pool in self._pools.values():
            session = pool.get(id_)
            if session is not None:
                if _expired(session, self.idle):
                    pool.drop(id_)
                    return None
                return session
        return None

    async def put(self, session: Session) -> None:
        self._pools[not session.logged_in].drop(session.id)  # logged out, or in
        self._pools[session.logged_in].put(session)

    async def drop(self, id_: str) -> None:
        for pool in self._pools.values():
            pool.drop(id_)


class _Pool:
    def __init__(self, limit: int):
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def get(self, id_: str) -> Session | None:
        session = self._sessions.get(id_)
        if session is not None:
            self._sessions.move_to_end(id_)
        return session

    def put(self, session: Session) -> None:
        self._sessions[session.id] = session
        self._sessions.move_to_end(session.id)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)

    def drop(self, id_: str) -> None:
        self._sessions.pop(id_, None)


class RedisSessions:
    """Sessions every worker shares, each a JSON value that Redis expires when idle; keys
    ``enjournal:<site>:session:<id>``."""

    def __init__(self, url: str, idle: float = 1800.0, site: str = "web"):
        import redis.asyncio as redis

        self.idle = idle
        self._prefix = f"enjournal:{site}:session:"
        self._redis: Any = redis.from_url(url)

    async def get(self, id_: str) -> Session | None:
        raw = await self._redis.get(self._prefix + id_)
        if raw is None:
            return None
        session = stored_session(orjson.loads(raw))
        return None if _expired(session, self.idle) else session

    async def put(self, session: Session) -> None:
        # A session not logged in lives a short while: an unfinished login, a language.
        ttl = self.idle if session.logged_in else ANONYMOUS_SECONDS
        await self._redis.set(self._prefix + session.id, orjson.dumps(asdict(session)), ex=int(ttl))

    async def drop(self, id_: str) -> None:
        await self._redis.delete(self._prefix + id_)

    async def aclose(self) -> None:
        await self._redis.aclose()


def stored_session(values: dict[str, Any]) -> Session:
    """A session from its stored JSON; a value the Session has no field for is the
    service's (``data``), as a session stored before the service's values moved there
    kept them."""
    known = {f.name for f in fields(Session)}
    data = {k: v for k, v in values.items() if k not in known}
    session = Session(**{k: v for k, v in values.items() if k in known})
    session.data = {**data, **session.data}
    return session


def sessions_from_url(url: str | None, idle: float, site: str = "web") -> Sessions:
    """Redis sessions for a ``redis://``, ``rediss://`` or ``unix://`` URL, else memory."""
    if url and url.split("://", 1)[0].lower() in ("redis", "rediss", "unix"):
        return RedisSessions(url, idle, site)
    return MemorySessions(idle)


def _expired(session: Session, idle: float, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if now - session.seen > idle:
        return True
    return session.logged_in and session.ends < now


def cookie_options(path: str, secure: bool = True) -> dict[str, Any]:
    """The session cookie's flags: not readable by scripts, not sent by other sites' forms
    or sub-requests (Lax still lets the login redirect back in), HTTPS only, for ``path``."""
    return {"httponly": True, "secure": secure, "samesite": "lax", "path": path}

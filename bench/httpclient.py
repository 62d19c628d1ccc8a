"""A lean HTTP/1.1 keep-alive client on asyncio streams.

It does just enough HTTP for the benchmark (Content-Length and chunked bodies, keep-alive,
reconnect on ``Connection: close``) so that the load generator costs far less CPU per
request than the server it measures; httpx spends several times more per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        """``headers``: sent with every request (a bearer token, an access basis)."""
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        fixed = {"Host": f"{host}:{port}", **(headers or {})}
        self._host_header = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 24
        )

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        if body is not None:
            head.append(f"Content-Type: {content_type or 'application/fhir+json'}\r\n".encode())
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        self.writer.write(b"".join(head) + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            payload = await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            payload = await self._chunked()
        else:
            raise HttpError(f"response without length: {raw[:200]!r}")
        if b"\r\nconnection: close" in lower:
            await self.close()
        return status, payload

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def wait_ready(host: str, port: int, timeout: float = 60.0) -> None:
    """Wait until ``GET /health`` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        conn = Connection(host, port)
        try:
            status, _ = await conn.request("GET", "/health")
            if status == 200:
                return
        except (OSError, asyncio.IncompleteReadError, HttpError):
            pass
        finally:
            await conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on port {port} did not become ready")
        await asyncio.sleep(0.2)

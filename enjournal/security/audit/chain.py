"""The hash chain: an event's stored canonical JSON and its link to the one before.

``hash = sha256(prev_hash || seq (8 bytes, big-endian) || event)``, where ``event`` is the
canonical JSON (orjson, sorted keys) and the first ``prev_hash`` is 32 zero bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

import orjson

from enjournal.fhir.datetime import format_instant
from enjournal.security.audit.columns import event_columns

ZERO_HASH = bytes(32)


def canonical(event: dict) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: bytes, seq: int, event: bytes) -> bytes:
    """``sha256(prev_hash || seq as 8 bytes big-endian || event bytes)``."""
    digest = hashlib.sha256(prev_hash)
    digest.update(seq.to_bytes(8, "big", signed=True))
    digest.update(event)
    return digest.digest()


def prepare(events: Iterable[dict]) -> list[tuple[tuple, bytes]]:
    prepared = []
    for event in events:
        if "recorded" not in event:
            event["recorded"] = format_instant(int(time.time() * 1000))
        prepared.append((event_columns(event), canonical(event)))
    return prepared

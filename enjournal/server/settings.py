"""Server settings, from the command line or ``ENJOURNAL_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///data/enjournal.sqlite"
    base_url: str | None = None  # public base of the FHIR API; derived from requests if None
    max_body_bytes: int = 20 * 1024 * 1024
    pool_size: int = 10
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": env.get("ENJOURNAL_DATABASE_URL", cls.database_url),
            "base_url": env.get("ENJOURNAL_BASE_URL") or None,
            "max_body_bytes": int(env.get("ENJOURNAL_MAX_BODY_BYTES", cls.max_body_bytes)),
            "pool_size": int(env.get("ENJOURNAL_POOL_SIZE", cls.pool_size)),
            "log_level": env.get("ENJOURNAL_LOG_LEVEL", cls.log_level),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

"""Server settings, from the command line or ``ENJOURNAL_*`` environment variables.

Security is on unless ``ENJOURNAL_AUTH=off`` says otherwise (for tests of the FHIR core and
for benchmarks that measure the cost of security).  With it on, tokens must come from a
trusted issuer: a real HelseID / ID-porten / Keycloak (``ENJOURNAL_TRUSTED_ISSUERS``, a JSON
list of ``{"issuer", "audience", "jwks_url", "kind"}``) or the embedded demo provider
(``ENJOURNAL_OIDC_PROVIDER=on``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///data/enjournal.sqlite"
    public_url: str = "http://127.0.0.1:8080"  # where clients reach this server
    base_url: str | None = None  # public base of the FHIR API; public_url + /fhir if None
    max_body_bytes: int = 20 * 1024 * 1024
    pool_size: int = 10
    # How long one SQL statement may run before it is cancelled and the request answered
    # 503 (too-costly): reads (searches) briefly, writes longer (docs/architecture.md, Limits).
    read_timeout_ms: int = 5_000
    write_timeout_ms: int = 30_000
    log_level: str = "INFO"
    auth: bool = True
    trusted_issuers: str | None = None
    oidc_provider: bool = False
    oidc_key_file: str = "data/oidc-signing-key.json"
    # JSON list of the SMART apps and backends the embedded provider knows (docs/smart.md).
    oidc_clients_file: str | None = None
    # The private key documents are signed with (kjernejournal $summary); created if missing.
    signing_key_file: str = "data/document-signing-key.json"
    audience: str = "enjournal"
    redis_url: str | None = None  # rate limits shared by all workers; in-process if unset
    # Rate limits as "requests per second/burst"; "off" disables one.  Per IP applies before
    # authentication (all callers behind one NAT share it: keep it generous).
    rate_limit_user: str = "20/100"
    rate_limit_client: str = "200/1000"
    rate_limit_ip: str = "500/1000"
    # Off: read audit events are committed without waiting for the disk flush (PostgreSQL
    # synchronous_commit off); a database server crash may lose the last moment of them.
    audit_reads_synchronous: bool = True
    # Refuse codes missing from complete code systems the server holds, and bad UCUM units.
    terminology_check: bool = True
    # Bulk Data $export (services/registers/bulk.py, docs/registers.md): where the NDJSON
    # files go, how long a finished export's files live, the bytes one read from the store
    # (and one file) may hold, how long a worker's claim on a job lasts without a sign of
    # life, and how many exports one process runs side by side.
    export_dir: str = "data/exports"
    export_expire_seconds: int = 3600
    export_batch_bytes: int = 4 * 1024 * 1024
    export_file_bytes: int = 256 * 1024 * 1024
    export_lease_seconds: int = 60
    export_workers: int = 2
    # Run the services' scheduled jobs (deletions after their deadlines) in this process.
    jobs: bool = True
    # The demo's simulated home devices (velferdsteknologi): readings every 20 s, in process.
    demo_devices: bool = False
    demo_redirect_uris: tuple[str, ...] = ("http://127.0.0.1:8080/callback",)
    # The registers' pseudonym keys, held outside the data store: a directory with one
    # ``<register>.key`` file each, or a JSON file {"kpr": "<hex>"}; no default key.
    register_keys: str | None = None
    # Where register feeds (``$register-export``, ``enjournal register export``) are written.
    register_out: str = "data/registers"
    # Messaging between organisations (services/messaging, docs/messaging.md): the transport
    # ("database": a queue in the data store, the embedded default; or a RabbitMQ URL,
    # amqp://user:password@host:5672/vhost), deliveries before a message is dead-lettered,
    # how long a sender waits for a receipt before the message is overdue, how old the
    # oldest undelivered message may get before the queue-age alert, and the address
    # register file (FHIR Bundle or NDJSON) the platform keeps its copy current from.
    messaging_transport: str = "database"
    messaging_max_attempts: int = 5
    messaging_receipt_seconds: int = 3600
    messaging_queue_age_seconds: int = 300
    messaging_addresses: str | None = None
    # Days a message's body is kept in the ledger after its receipt (data minimisation: the
    # content is in the record); who sent what to whom and the receipt are kept.
    messaging_keep_days: int = 90

    def rate_limit(self, which: str) -> tuple[float, int] | None:
        """``rate_limit_user`` etc. as (rate, burst), or None when "off"."""
        raw = getattr(self, f"rate_limit_{which}").strip().lower()
        if raw in ("off", "none", ""):
            return None
        rate, _, burst = raw.partition("/")
        return float(rate), int(burst or float(rate) * 5)

    @property
    def fhir_base(self) -> str:
        return self.base_url or f"{self.public_url.rstrip('/')}/fhir"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ENJOURNAL_{f.name.upper()}")
            if raw is None or f.name == "demo_redirect_uris":
                continue
            if f.type in ("bool",):
                values[f.name] = raw.strip().lower() in ("1", "on", "true", "yes")
            elif f.type in ("int",):
                values[f.name] = int(raw)
            else:
                values[f.name] = (
                    raw or None
                    if f.name in ("base_url", "trusted_issuers", "redis_url", "messaging_addresses")
                    else raw
                )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

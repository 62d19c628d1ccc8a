"""The database schema, shared by the SQLite and PostgreSQL backends.

One table holds each resource's current version (``resources``), one every version
(``resource_versions``), and eight index tables hold the values of the resource's search
parameters, one table per FHIR search parameter type.  Index rows are keyed by ``rid``, the
resource's surrogate integer key, and are replaced whenever the resource changes, in the same
database transaction as the resource itself.

Times are integer milliseconds since the Unix epoch (UTC).  Date index rows hold the closed
range ``[low, high]`` the value covers at its precision (``2024`` covers the whole year).
Strings in ``norm`` columns are case-folded with accents removed (see
``enjournal.fhir.text.normalize``).

Why each index exists is said in docs/architecture.md ("Storage").
"""

from __future__ import annotations

from dataclasses import dataclass

# Column order of each index table after the leading (rid, type) columns.  The indexer
# (enjournal.fhir.indexing) produces tuples in exactly this order.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "idx_string": ("param", "norm", "exact"),
    "idx_token": ("param", "system", "code", "text"),
    "idx_reference": ("param", "target_type", "target_id", "url"),
    "idx_date": ("param", "low", "high"),
    "idx_number": ("param", "low", "high", "value"),
    "idx_quantity": ("param", "system", "code", "unit", "low", "high", "value"),
    "idx_uri": ("param", "value"),
    "idx_composite": ("param", "grp", "comp", "system", "code", "low", "high", "text"),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str


_TABLES_SQLITE = """
CREATE TABLE resources (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    content BLOB,
    UNIQUE (type, id)
);
CREATE INDEX resources_type_updated ON resources (type, last_updated);
CREATE TABLE resource_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rid INTEGER NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method TEXT NOT NULL,
    content BLOB,
    UNIQUE (type, id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
CREATE TABLE idx_string (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (type, param, norm);
CREATE INDEX idx_string_rid ON idx_string (rid);
CREATE TABLE idx_token (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT);
CREATE INDEX idx_token_value ON idx_token (type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);
CREATE TABLE idx_reference (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type, type, param);
CREATE INDEX idx_reference_url ON idx_reference (url) WHERE url IS NOT NULL;
CREATE INDEX idx_reference_rid ON idx_reference (rid);
CREATE TABLE idx_date (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL);
CREATE INDEX idx_date_value ON idx_date (type, param, low, high);
CREATE INDEX idx_date_rid ON idx_date (rid);
CREATE TABLE idx_number (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low REAL NOT NULL, high REAL NOT NULL, value REAL NOT NULL);
CREATE INDEX idx_number_value ON idx_number (type, param, low);
CREATE INDEX idx_number_rid ON idx_number (rid);
CREATE TABLE idx_quantity (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, unit TEXT, low REAL NOT NULL, high REAL NOT NULL, value REAL NOT NULL);
CREATE INDEX idx_quantity_value ON idx_quantity (type, param, code, low);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);
CREATE TABLE idx_uri (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    value TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (type, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);
CREATE TABLE idx_composite (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    grp INTEGER NOT NULL, comp INTEGER NOT NULL, system TEXT, code TEXT, low REAL, high REAL,
    text TEXT);
CREATE INDEX idx_composite_value ON idx_composite (type, param, comp, code);
CREATE INDEX idx_composite_rid ON idx_composite (rid);
CREATE TABLE search_pages (id TEXT PRIMARY KEY, created INTEGER NOT NULL, rids BLOB NOT NULL);
"""

_TABLES_POSTGRES = """
CREATE TABLE resources (
    rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    content BYTEA,
    UNIQUE (type, id)
);
CREATE INDEX resources_type_updated ON resources (type, last_updated);
CREATE TABLE resource_versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid BIGINT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated BIGINT NOT NULL,
    method TEXT NOT NULL,
    content BYTEA,
    UNIQUE (type, id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
CREATE TABLE idx_string (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (type, param, norm text_pattern_ops);
CREATE INDEX idx_string_rid ON idx_string (rid);
CREATE TABLE idx_token (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT);
CREATE INDEX idx_token_value ON idx_token (type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);
CREATE TABLE idx_reference (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type, type, param);
CREATE INDEX idx_reference_url ON idx_reference (url) WHERE url IS NOT NULL;
CREATE INDEX idx_reference_rid ON idx_reference (rid);
CREATE TABLE idx_date (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low BIGINT NOT NULL, high BIGINT NOT NULL);
CREATE INDEX idx_date_value ON idx_date (type, param, low, high);
CREATE INDEX idx_date_rid ON idx_date (rid);
CREATE TABLE idx_number (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION NOT NULL);
CREATE INDEX idx_number_value ON idx_number (type, param, low);
CREATE INDEX idx_number_rid ON idx_number (rid);
CREATE TABLE idx_quantity (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, unit TEXT, low DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION NOT NULL);
CREATE INDEX idx_quantity_value ON idx_quantity (type, param, code, low);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);
CREATE TABLE idx_uri (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    value TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (type, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);
CREATE TABLE idx_composite (rid BIGINT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    grp INTEGER NOT NULL, comp INTEGER NOT NULL, system TEXT, code TEXT,
    low DOUBLE PRECISION, high DOUBLE PRECISION, text TEXT);
CREATE INDEX idx_composite_value ON idx_composite (type, param, comp, code);
CREATE INDEX idx_composite_rid ON idx_composite (rid);
CREATE TABLE search_pages (id TEXT PRIMARY KEY, created BIGINT NOT NULL, rids BYTEA NOT NULL);
"""


# ---- Migration 2: the tamper-evident audit log -------------------------------------------
#
# ``audit_log`` is append-only: rows are written by ``enjournal.security.audit.append`` in the
# caller's transaction and never changed.  Each row's ``hash`` is
# ``sha256(prev_hash || seq as 8 bytes big-endian || event)``, chaining every event to the one
# before it; ``audit_head`` (one row) holds the last seq and hash, and appends lock it, so
# appends are serialised and truncating the tail is detectable.  The columns other than
# ``event``, ``prev_hash`` and ``hash`` are derived from the event for the queries below, and
# ``verify`` re-derives them to catch edits.
#
# The triggers reject UPDATE and DELETE on audit_log (and TRUNCATE on PostgreSQL), and a
# backwards move or deletion of the head row.  They stop mistakes and ordinary application
# bugs, not a database administrator: anyone who may drop or disable a trigger can still edit
# the table.  That is what the hash chain is for: ``enjournal audit verify`` finds the edit.
# Rewriting the whole chain from some point to the end is only caught by comparing the head
# hash with a copy kept elsewhere (verify prints it so it can be anchored).
#
# SQLite trigger bodies contain ';': the SQLite migration runner splits scripts into complete
# statements with sqlite3.complete_statement, so they stay whole.

_AUDIT_SQLITE = """
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    recorded INTEGER NOT NULL,
    patient_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    purpose TEXT,
    emergency INTEGER NOT NULL DEFAULT 0,
    event BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, seq);
CREATE INDEX audit_log_recorded ON audit_log (recorded);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE rejected'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE rejected'); END;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head WHEN NEW.seq < OLD.seq
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END;
"""

_AUDIT_POSTGRES = """
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    recorded BIGINT NOT NULL,
    patient_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    purpose TEXT,
    emergency BOOLEAN NOT NULL DEFAULT FALSE,
    event BYTEA NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, seq);
CREATE INDEX audit_log_recorded ON audit_log (recorded);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'audit_head only moves forward: % rejected', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "resources, versions and search indexes", _TABLES_SQLITE, _TABLES_POSTGRES),
    Migration(2, "tamper-evident audit log", _AUDIT_SQLITE, _AUDIT_POSTGRES),
]

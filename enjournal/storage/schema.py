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

from enjournal.fhir.indexing import ROW_COLUMNS

# The index table of each kind of index row the indexer (enjournal.fhir.indexing) returns:
# one per search parameter type.
INDEX_TABLES: dict[str, str] = {kind: f"idx_{kind}" for kind in ROW_COLUMNS}

# Column order of each index table after the leading (rid, type) columns: the indexer's row
# order (``ROW_COLUMNS``), which the CREATE TABLE statements below follow.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    INDEX_TABLES[kind]: columns for kind, columns in ROW_COLUMNS.items()
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

# ---- Migration 3: the terminology store ----------------------------------------------------
#
# Code systems loaded by ``enjournal.terminology.loading.save_code_system``.  Several versions
# of one URL live side by side (``version`` is '' when the publisher gave none).  Concepts
# and everything hanging off them are keyed by (cs, code), ``cs`` being tx_code_systems.id, so
# a load streams rows with executemany without reading generated keys back.
#
# - tx_closure holds every (ancestor, descendant) pair of the is-a hierarchy, each concept
#   being its own ancestor too, so ``is-a X`` is one index range and $subsumes one lookup.
# - tx_words holds each normalised word of a concept's display and designations, and its
#   normalised code: the $expand text filter matches word prefixes with an index range
#   (``word >= 'dia' AND word < 'dia' || U+10FFFF``; COLLATE "C" on PostgreSQL so the range
#   is a byte range whatever the database collation).
# - On PostgreSQL a pg_trgm GIN index on the normalised display serves substring matching
#   when the extension can be created (it needs rights the database may not grant; the DO
#   block then skips it).
# - tx_concept_map holds the groups of ConceptMaps saved by ``save_concept_map`` (large
#   publisher maps); maps stored through the API are read as resources.

_TERMINOLOGY_COMMON = """
CREATE TABLE tx_concepts (cs INTEGER NOT NULL, code TEXT NOT NULL, display TEXT,
    norm TEXT, inactive {bool} NOT NULL DEFAULT {false}, PRIMARY KEY (cs, code));
CREATE TABLE tx_designations (cs INTEGER NOT NULL, code TEXT NOT NULL, language TEXT,
    use_system TEXT, use_code TEXT, value TEXT NOT NULL, norm TEXT NOT NULL);
CREATE INDEX tx_designations_code ON tx_designations (cs, code);
CREATE TABLE tx_properties (cs INTEGER NOT NULL, code TEXT NOT NULL, property TEXT NOT NULL,
    value TEXT, type TEXT NOT NULL);
CREATE INDEX tx_properties_code ON tx_properties (cs, code);
CREATE INDEX tx_properties_value ON tx_properties (cs, property, value);
CREATE TABLE tx_parents (cs INTEGER NOT NULL, child TEXT NOT NULL, parent TEXT NOT NULL);
CREATE INDEX tx_parents_child ON tx_parents (cs, child);
CREATE INDEX tx_parents_parent ON tx_parents (cs, parent);
CREATE TABLE tx_closure (cs INTEGER NOT NULL, ancestor TEXT NOT NULL, descendant TEXT NOT NULL,
    PRIMARY KEY (cs, ancestor, descendant));
CREATE INDEX tx_closure_descendant ON tx_closure (cs, descendant, ancestor);
CREATE TABLE tx_words (cs INTEGER NOT NULL, word TEXT {collate} NOT NULL, code TEXT NOT NULL);
CREATE INDEX tx_words_word ON tx_words (cs, word, code);
CREATE INDEX tx_words_code ON tx_words (cs, code);
CREATE TABLE tx_concept_map (map_id TEXT NOT NULL, map_version INTEGER NOT NULL,
    source_system TEXT, source_version TEXT, target_system TEXT, target_version TEXT,
    source_code TEXT NOT NULL, source_display TEXT, target_code TEXT, target_display TEXT,
    equivalence TEXT NOT NULL, comment TEXT);
CREATE INDEX tx_concept_map_source ON tx_concept_map (source_code, source_system);
CREATE INDEX tx_concept_map_id ON tx_concept_map (map_id, source_code);
"""

_TERMINOLOGY_SQLITE = (
    """
CREATE TABLE tx_code_systems (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    name TEXT,
    title TEXT,
    status TEXT,
    resource_id TEXT,
    concept_count INTEGER NOT NULL DEFAULT 0,
    loaded INTEGER NOT NULL,
    hierarchy_meaning TEXT,
    info TEXT,
    UNIQUE (url, version)
);
"""
    + _TERMINOLOGY_COMMON.format(bool="INTEGER", false="0", collate="")
    + """
CREATE INDEX tx_concepts_norm ON tx_concepts (cs, norm);
"""
)

_TERMINOLOGY_POSTGRES = (
    """
CREATE TABLE tx_code_systems (
    id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    url TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    name TEXT,
    title TEXT,
    status TEXT,
    resource_id TEXT,
    concept_count INTEGER NOT NULL DEFAULT 0,
    loaded BIGINT NOT NULL,
    hierarchy_meaning TEXT,
    info TEXT,
    UNIQUE (url, version)
);
"""
    + _TERMINOLOGY_COMMON.format(bool="BOOLEAN", false="FALSE", collate='COLLATE "C"')
    + """
CREATE INDEX tx_concepts_norm ON tx_concepts (cs, norm text_pattern_ops);
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    SELECT n.nspname INTO trgm_schema FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX tx_concepts_trgm ON tx_concepts '
            'USING gin (norm %I.gin_trgm_ops)', trgm_schema);
    END IF;
END
$$;
"""
)

# ---- Migration 4: planner statistics that follow the data ----------------------------------
#
# Point lookups (``type = ? AND id = ?``) have two candidate indexes on PostgreSQL: the unique
# ``(type, id)`` and the type-leading secondary one (``(type, last_updated)``, ``(type,
# seq)``).  When the statistics say a type is rare (it was, at the last ANALYZE) both cost
# one row and the planner may take the secondary index, which then walks every row of the
# type: a resource type that grew since (MedicationDispense and Communication during an
# e-resept run) made each lookup O(rows of the type).  The default analyze trigger, 10 % of
# the table, comes later the bigger the table gets; a fixed number of changed rows keeps the
# per-type estimates current at any size (an ANALYZE samples a fixed 30,000 rows).
_STATS_TABLES = ("resources", "resource_versions", *INDEX_COLUMNS)
_STATISTICS_POSTGRES = "".join(
    f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0, "
    "autovacuum_analyze_threshold = 20000);\n"
    for table in _STATS_TABLES
)
# SQLite plans without statistics unless ANALYZE ran, preferring the unique index.
_STATISTICS_SQLITE = ""

# ---- Migration 5: Bulk Data export jobs ---------------------------------------------------
#
# One row per ``$export`` (enjournal.storage.exports, services/registers/bulk.py): what was
# asked (``params``, JSON), by which client, its state, the worker holding it and until when
# (``lease_until``: a worker that stops renewing loses the job to another), the checkpoint
# it resumes from (``progress``, JSON) and the files it wrote (``output``, JSON).
_EXPORT_JOBS = """
CREATE TABLE export_jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    params TEXT NOT NULL,
    transaction_time {int} NOT NULL,
    created {int} NOT NULL,
    lease_owner TEXT,
    lease_until {int} NOT NULL DEFAULT 0,
    progress TEXT,
    output TEXT,
    finished {int},
    expires {int}
);
CREATE INDEX export_jobs_status ON export_jobs (status, lease_until);
"""

# ---- Migration 6: one job table for every asynchronous export -------------------------------
#
# ``$viewdefinition-export`` and ``$register-export`` run on the same jobs as ``$export``
# (services/registers/bulk_runner.py); ``kind`` names the handler that runs a row, and the
# rows from before it are bulk exports.
_EXPORT_JOB_KIND = "ALTER TABLE export_jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'bulk';\n"

# ---- Migration 7: messaging between organisations ----------------------------------------
#
# services/messaging (docs/messaging.md), SQL in enjournal.storage.messaging:
# ``messages`` is the ledger of every message the platform's parties sent or received (the
# sender's and the receiver's view: published, delivered, read, its receipt); ``message_outbox``
# holds what is still to be handed to the transport, written in the same transaction as the
# change that caused it and deleted once the broker confirmed it (``dead`` set when the
# transport refused it ``messaging_max_attempts`` times); ``message_inbox`` holds the
# ids of the messages already processed, so a redelivered message has one effect;
# ``message_queue`` is the embedded transport (a queue in the database) when no broker is set.
# The boxes read a party's newest page by (party, created, id), whatever the party's volume;
# the queue is taken in ``seq`` order, skipping the few rows waiting for a retry.
_MESSAGING = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    sender TEXT NOT NULL,
    receiver TEXT NOT NULL,
    patient TEXT,
    refers TEXT,
    content_type TEXT NOT NULL,
    body {blob} NOT NULL,
    created {int} NOT NULL,
    published {int},
    delivered {int},
    read_at {int},
    receipt TEXT,
    receipt_id TEXT,
    receipt_at {int},
    errors TEXT,
    overdue {int}
);
CREATE INDEX messages_inbox ON messages (receiver, created, id) WHERE delivered IS NOT NULL;
CREATE INDEX messages_sender ON messages (sender, created, id);
CREATE INDEX messages_open ON messages (created) WHERE receipt IS NULL AND type <> 'APPREC';
CREATE UNIQUE INDEX messages_one_receipt ON messages (refers) WHERE type = 'APPREC';
CREATE TABLE message_outbox (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    route TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body {blob} NOT NULL,
    created {int} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt {int} NOT NULL,
    dead {int},
    error TEXT
);
CREATE INDEX message_outbox_due ON message_outbox (next_attempt, seq) WHERE dead IS NULL;
CREATE TABLE message_inbox (
    id TEXT PRIMARY KEY,
    received {int} NOT NULL
);
CREATE TABLE message_queue (
    seq {serial},
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    route TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body {blob} NOT NULL,
    created {int} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available {int} NOT NULL,
    lease_until {int} NOT NULL DEFAULT 0,
    dead {int},
    error TEXT
);
CREATE INDEX message_queue_ready ON message_queue (queue, seq) WHERE dead IS NULL;
"""
_MESSAGING_SQLITE = _MESSAGING.format(
    blob="BLOB", int="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT"
)
_MESSAGING_POSTGRES = _MESSAGING.format(
    blob="BYTEA", int="BIGINT", serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
)

MIGRATIONS: list[Migration] = [
    Migration(1, "resources, versions and search indexes", _TABLES_SQLITE, _TABLES_POSTGRES),
    Migration(2, "tamper-evident audit log", _AUDIT_SQLITE, _AUDIT_POSTGRES),
    Migration(3, "terminology store", _TERMINOLOGY_SQLITE, _TERMINOLOGY_POSTGRES),
    Migration(4, "planner statistics follow the data", _STATISTICS_SQLITE, _STATISTICS_POSTGRES),
    Migration(
        5,
        "bulk data export jobs",
        _EXPORT_JOBS.format(int="INTEGER"),
        _EXPORT_JOBS.format(int="BIGINT"),
    ),
    Migration(6, "export jobs of several kinds", _EXPORT_JOB_KIND, _EXPORT_JOB_KIND),
    Migration(7, "messaging between organisations", _MESSAGING_SQLITE, _MESSAGING_POSTGRES),
]

-- PHM Workstation local cache, schema version 3: panel sync from the EDW (FHIR Bulk Data Group
-- export with SMART Backend Services; crates/sync_client, crates/cache/src/sync.rs).
-- Both tables are kept across imports (KEPT_TABLES). A sync's downloads are staged in a
-- second SQLCipher file beside the cache (`<cache>.sync`, same key) until applied.

-- The server this cache syncs from (one row, id = 1), and how the last sync went.
CREATE TABLE sync_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    server_url     TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    last_synced_at TEXT,             -- when the last sync was applied (RFC 3339)
    last_full_at   TEXT,             -- when the last full sync was applied
    last_error     TEXT,             -- plain, PHI-free; NULL after a successful sync
    last_error_at  TEXT,
    last_report    TEXT              -- JSON: counts of the last applied sync
);

-- Per synced Group: the manifest transactionTime of the last applied export, the next `_since`.
-- Written in the same transaction as the data it describes.
CREATE TABLE sync_group (
    group_id         TEXT PRIMARY KEY,
    transaction_time TEXT NOT NULL,
    synced_at        TEXT NOT NULL
) WITHOUT ROWID;

-- A sync upserts by (type, id).
CREATE INDEX events_resource ON events(resource_id);
CREATE INDEX other_resources_resource ON other_resources(resource_type, resource_id);
CREATE INDEX patients_pcp ON patients(pcp_id);

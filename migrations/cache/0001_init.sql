-- PHM Workstation local cache, schema version 1.
-- Applied in one transaction by crates/cache (migrate.rs); PRAGMA user_version records the version.
-- Clinical tables are replaced as a whole by each import/sync (one transaction).

CREATE TABLE organizations (
    id    TEXT PRIMARY KEY,
    name  TEXT,
    raw   TEXT NOT NULL
);

CREATE TABLE practitioners (
    id    TEXT PRIMARY KEY,
    name  TEXT,             -- "Family, Given"
    raw   TEXT NOT NULL
);

-- One Group per PCP panel (Group.managingEntity = the practitioner).
CREATE TABLE groups (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    practitioner_id TEXT,
    raw             TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (group_id, patient_id)
) WITHOUT ROWID;
CREATE INDEX group_members_patient ON group_members(patient_id);

CREATE TABLE patients (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,  -- "Family, Given" (official name, else first)
    name_lc         TEXT NOT NULL,  -- Unicode-lowercased name, for search
    family          TEXT,
    given           TEXT,
    birth_date      TEXT,           -- YYYY-MM-DD (or partial as given)
    sex             TEXT,           -- administrative gender code
    pcp_id          TEXT,           -- generalPractitioner[0] when it is a Practitioner
    organization_id TEXT,
    active          INTEGER NOT NULL DEFAULT 1,
    deceased        INTEGER NOT NULL DEFAULT 0,
    raw             TEXT NOT NULL
);

-- Clinical events for timelines and summaries (one row per resource).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('encounter','condition','observation','procedure','medication','immunization')),
    resource_id TEXT,
    date        TEXT,               -- as in the resource (date or dateTime)
    ts          INTEGER,            -- date as Unix ms (UTC), for ordering; NULL if absent/unparsable
    end_date    TEXT,               -- period end / abatement
    code_system TEXT,
    code        TEXT,
    display     TEXT,
    value_num   REAL,               -- quantity value (systolic for a BP panel)
    value2_num  REAL,               -- diastolic for a BP panel
    value_text  TEXT,               -- coded/string/boolean value
    unit        TEXT,
    status      TEXT,               -- resource status (clinical status for conditions)
    raw         TEXT NOT NULL
);
-- Created by the import after bulk insert (faster); also here so an empty cache has it.
CREATE INDEX events_patient_ts ON events(patient_id, ts);

-- Resources of other types (Coverage, ...), kept for completeness.
CREATE TABLE other_resources (
    id            INTEGER PRIMARY KEY,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    patient_id    TEXT,
    raw           TEXT NOT NULL
);

-- Denormalized panel list, rebuilt by every import from the tables above.
-- Queries run on an in-memory copy (crates/cache/src/query.rs), so no
-- secondary indexes are needed here.
CREATE TABLE panel_row (
    patient_id      TEXT PRIMARY KEY,
    name            TEXT NOT NULL,  -- "Family, Given"
    name_lc         TEXT NOT NULL,  -- lower(name) for substring search
    birth_date      TEXT,
    sex             TEXT,
    pcp_id          TEXT,
    pcp_name        TEXT,
    last_visit      TEXT,           -- latest encounter date
    conditions      TEXT NOT NULL DEFAULT '',  -- active condition displays, "; "-separated, sorted
    condition_codes TEXT NOT NULL DEFAULT '|'  -- "|code|code|" for exact code filters
) WITHOUT ROWID;

CREATE TABLE accounts (
    username      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('care_manager','clinician','quality_analyst','privacy_officer')),
    phc           TEXT NOT NULL,    -- Argon2id PHC string
    failed_count  INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,          -- Unix ms
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    last_login_at TEXT
);

-- The access crate's hash-chained audit records.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    user        TEXT NOT NULL,
    role        TEXT,
    purpose     TEXT,
    action      TEXT NOT NULL,
    patient_ids TEXT NOT NULL,      -- JSON array of strings
    query       TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_user ON audit(user, seq);
CREATE INDEX audit_at ON audit(at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

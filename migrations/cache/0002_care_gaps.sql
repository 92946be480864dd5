-- PHM Workstation local cache, schema version 2: care gaps computed locally by the shared
-- eCQM engine, the worklist built on them, and the outbox of worklist actions.
-- Everything here is kept across imports (crates/cache/src/import.rs, KEPT_TABLES): results are
-- re-evaluated only for patients whose data changed; actions are never lost.

-- Who sees which patients: a clinician their attributed patients (practitioner), a care
-- manager the panels (Groups) of the care teams assigned to them.
ALTER TABLE accounts ADD COLUMN practitioner_id TEXT;
CREATE TABLE account_groups (
    username TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (username, group_id)
) WITHOUT ROWID;

-- The measures last evaluated: their definition (groups, improvement notation) and what would
-- close each group's gap, read from the ELM once per package and period.
CREATE TABLE measure_package (
    measure_id   TEXT PRIMARY KEY,     -- Measure.name
    short_name   TEXT NOT NULL,        -- CMS id when known, else the name
    title        TEXT NOT NULL,
    version      TEXT,
    url          TEXT,
    definition   TEXT NOT NULL,        -- JSON: ecqm::MeasureDef
    requirements TEXT NOT NULL         -- JSON: {group_id: [ecqm::Requirement]}
);

-- One row per evaluation run (full or incremental).
CREATE TABLE eval_run (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    setup        TEXT NOT NULL,        -- fingerprint: engine, packages, period
    patients     INTEGER NOT NULL,     -- patients in the panel
    evaluated    INTEGER NOT NULL,     -- patients evaluated in this run
    failed       INTEGER NOT NULL DEFAULT 0
);

-- What each patient's stored results were computed from: skip them while both still match.
CREATE TABLE eval_patient (
    patient_id   TEXT PRIMARY KEY,
    data_hash    TEXT NOT NULL,
    setup        TEXT NOT NULL,
    evaluated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE measure_result (
    patient_id TEXT NOT NULL,
    measure_id TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    ip         INTEGER NOT NULL,
    denom      INTEGER NOT NULL,
    denex      INTEGER NOT NULL,
    denexcep   INTEGER NOT NULL,
    numer      INTEGER NOT NULL,
    numex      INTEGER NOT NULL,
    PRIMARY KEY (patient_id, measure_id, group_id)
) WITHOUT ROWID;

-- Gap status per patient, measure and group (ecqm::gap_status; not-applicable rows are not
-- stored) with its evidence (JSON, derived from the ELM).
CREATE TABLE care_gap (
    patient_id TEXT NOT NULL,
    measure_id TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('open','closed','prospective')),
    why_open   TEXT NOT NULL DEFAULT '[]',
    why_line   TEXT NOT NULL DEFAULT '',   -- the first line of why_open, for the worklist
    evidence   TEXT NOT NULL DEFAULT '[]',
    since      TEXT NOT NULL,          -- when this status was first computed
    PRIMARY KEY (patient_id, measure_id, group_id)
) WITHOUT ROWID;
CREATE INDEX care_gap_status ON care_gap(status);

-- The care team's work on a gap: survives re-evaluation.
CREATE TABLE gap_work (
    patient_id       TEXT NOT NULL,
    measure_id       TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'new'
                     CHECK (state IN ('new','in_progress','scheduled','declined','excluded')),
    assignee         TEXT,
    snoozed_until    TEXT,             -- YYYY-MM-DD
    visit_date       TEXT,             -- YYYY-MM-DD
    reason_code      TEXT,             -- declined / excluded reason
    last_outreach_at TEXT,
    last_outreach    TEXT,             -- "call: reached"
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (patient_id, measure_id, group_id)
) WITHOUT ROWID;

-- Every worklist action, with its own UUID, for the EDW (sent exactly once by sync).
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,      -- UUID v4
    created_at  TEXT NOT NULL,
    username    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    measure_id  TEXT,
    group_id    TEXT,
    body        TEXT NOT NULL,         -- JSON
    sent_at     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX outbox_unsent ON outbox(sent_at, created_at);
CREATE INDEX outbox_patient ON outbox(patient_id, created_at);

-- Resources recorded in the app (gap-closure evidence), evaluated with the patient's data.
CREATE TABLE local_resource (
    id            TEXT PRIMARY KEY,    -- the resource id (a UUID)
    patient_id    TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    action_id     TEXT NOT NULL,       -- outbox.id
    raw           TEXT NOT NULL
);
CREATE INDEX local_resource_patient ON local_resource(patient_id);

-- Saved worklist views, per user.
CREATE TABLE saved_view (
    username TEXT NOT NULL,
    name     TEXT NOT NULL,
    query    TEXT NOT NULL,            -- JSON: WorklistQuery
    PRIMARY KEY (username, name)
) WITHOUT ROWID;

CREATE INDEX other_resources_patient ON other_resources(patient_id);

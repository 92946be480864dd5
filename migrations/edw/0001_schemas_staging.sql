-- 0001: schemas and the staging area (raw NDJSON lines, per-file load batches).
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS edw;
CREATE SCHEMA IF NOT EXISTS mart;
CREATE SCHEMA IF NOT EXISTS audit;

-- One row per (source, file content). The file's sha256 is the batch identity:
-- re-loading an identical file under the same source is recognised and skipped.
CREATE TABLE staging.load_batch (
    id              bigserial PRIMARY KEY,
    source          text        NOT NULL,
    file_name       text        NOT NULL,
    file_sha256     text        NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    line_count      bigint,
    status          text        NOT NULL DEFAULT 'staged'
                    CHECK (status IN ('staged', 'merged')),
    merged_through  bigint      NOT NULL DEFAULT 0,  -- last line number merged (restart point)
    loaded_count    bigint      NOT NULL DEFAULT 0,
    quarantined_count bigint    NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT load_batch_identity UNIQUE (source, file_sha256)
);
COMMENT ON CONSTRAINT load_batch_identity ON staging.load_batch IS
    'batch identity = (source, file sha256): makes re-ingest of the same file a no-op';

-- Raw lines exactly as read (text, not jsonb: malformed lines must be kept too).
-- (batch_id, line_no) is unique per (source, file checksum, line) since a batch is one (source, sha256).
CREATE TABLE staging.raw_line (
    batch_id  bigint NOT NULL REFERENCES staging.load_batch (id),
    line_no   bigint NOT NULL CHECK (line_no > 0),
    raw       text   NOT NULL,          -- lossy UTF-8 when bad_utf8
    bad_utf8  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (batch_id, line_no)
);
COMMENT ON INDEX staging.raw_line_pkey IS
    'idempotence: a line of a batch is staged once; also the merge scan order';

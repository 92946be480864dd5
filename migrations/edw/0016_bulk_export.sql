-- 0016: FHIR Bulk Data Access Group export (edw::bulk).

-- Group membership history. attribute changes membership by difference: a new member
-- gets the change number it joined at, a member who leaves is deleted and logged here
-- with the change number it left at. An export with _since (watermark W) sends new
-- members (joined_change_no > W) whole and lists members who left after W in its
-- `deleted` files.
ALTER TABLE edw.patient_group_member
    ADD COLUMN joined_change_no bigint NOT NULL DEFAULT nextval('edw.change_seq');
CREATE TABLE edw.patient_group_left (
    group_id       bigint NOT NULL REFERENCES edw.patient_group (id) ON DELETE CASCADE,
    person_id      bigint NOT NULL,          -- no FK: the person may be merged away later
    left_change_no bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    left_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, left_change_no, person_id)
);
COMMENT ON TABLE edw.patient_group_left IS 'members who left a Group, with the change number they left at (bulk export deleted)';
GRANT SELECT ON edw.patient_group, edw.patient_group_member, edw.patient_group_left TO edw_org_reader;

-- The export clock: each kick-off records its transactionTime with the change
-- watermark read under measure::SOURCE_WRITE_LOCK at that time (no source row with a
-- lower change number can commit later). _since=T maps to the greatest watermark
-- recorded at or before T.
CREATE TABLE edw.bulk_clock (
    transaction_time timestamptz PRIMARY KEY,
    watermark        bigint NOT NULL
);

-- Export jobs (the async request pattern): owned by the server, never by an org role.
CREATE TABLE edw.bulk_job (
    id               text PRIMARY KEY,          -- random, unguessable (the status URL)
    client_id        text NOT NULL,
    group_id         bigint NOT NULL,
    request_url      text NOT NULL,             -- the kick-off URL (manifest `request`)
    request          jsonb NOT NULL,            -- _since, _type, _typeFilter, lenient
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    patients_done    bigint NOT NULL DEFAULT 0,
    patients_total   bigint,
    transaction_time timestamptz,
    manifest         jsonb,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX bulk_job_expires ON edw.bulk_job (expires_at);
COMMENT ON INDEX edw.bulk_job_expires IS 'the sweep deletes expired jobs and their files';

-- Persons of these ids that have no source record at all (merged into another person):
-- an organisation role cannot tell them from another organisation's persons, and a
-- client that holds them must be told to delete them. Says nothing else about anyone.
CREATE FUNCTION edw.persons_without_records(ids bigint[]) RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, edw AS $$
    SELECT u.x FROM unnest(ids) AS u(x)
    WHERE NOT EXISTS (SELECT 1 FROM edw.source_patient sp WHERE sp.person_id = u.x)
$$;
REVOKE EXECUTE ON FUNCTION edw.persons_without_records(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION edw.persons_without_records(bigint[]) TO edw_org_reader;

-- The server's own role (0015 makes it; made here too if missing): the export clock and
-- jobs, and the raw text of the lines an export selected under row-level security
-- (read by key; staging lines carry no organisation, so org roles get none of them).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'edw_api') THEN
        CREATE ROLE edw_api NOLOGIN NOINHERIT;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA edw, staging TO edw_api;
GRANT SELECT ON staging.raw_line TO edw_api;
GRANT SELECT ON SEQUENCE edw.change_seq TO edw_api;
GRANT SELECT, INSERT, UPDATE ON edw.bulk_clock TO edw_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON edw.bulk_job TO edw_api;
GRANT SELECT ON edw.patient_group TO edw_api;

-- PHI access log: what an export or download covered (Group, types, _since, patients).
ALTER TABLE audit.phi_access ADD COLUMN IF NOT EXISTS detail jsonb;

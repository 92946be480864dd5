-- 0005: audit. PHI access log partitioned by month (cheap retention: detach/drop old
-- months; queries by time prune to one partition), and workstation audit hash chains.

CREATE TABLE audit.phi_access (
    id            bigserial,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,          -- e.g. 'read'
    resource_type text NOT NULL,
    resource_id   text,
    outcome       integer NOT NULL,       -- HTTP status
    client        text,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
COMMENT ON TABLE audit.phi_access IS 'partitioned by month: retention by dropping partitions, time-range scans prune';

-- Create the monthly partition holding ts if missing (called by the server on start
-- and before each insert month change; also pre-created below for 2025-2028).
CREATE FUNCTION audit.ensure_phi_access_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', ts AT TIME ZONE 'UTC')::date;
    name text := 'phi_access_' || to_char(m, 'YYYY_MM');
BEGIN
    IF to_regclass('audit.' || name) IS NULL THEN
        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.phi_access
                        FOR VALUES FROM (%L) TO (%L)', name,
                       (m::timestamp AT TIME ZONE 'UTC'),
                       ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        EXECUTE format('COMMENT ON TABLE audit.%I IS %L', name, 'phi_access month partition ' || to_char(m, 'YYYY-MM'));
    END IF;
END
$$;
SELECT audit.ensure_phi_access_partition(g)
FROM generate_series(timestamptz '2025-01-01 00:00Z', timestamptz '2028-12-01 00:00Z', interval '1 month') g;
CREATE TABLE audit.phi_access_default PARTITION OF audit.phi_access DEFAULT;
COMMENT ON TABLE audit.phi_access_default IS 'catch-all so an insert never fails for a month without a partition';
CREATE INDEX phi_access_actor ON audit.phi_access (actor, at);
COMMENT ON INDEX audit.phi_access_actor IS 'accounting of disclosures: who accessed what, when';

-- Workstation audit hash chains, uploaded as-is and verified on receipt.
CREATE TABLE audit.workstation_chain (
    workstation_id text   NOT NULL,
    seq            bigint NOT NULL,
    prev_hash      text   NOT NULL,
    hash           text   NOT NULL,
    event          jsonb  NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workstation_id, seq)
);
COMMENT ON INDEX audit.workstation_chain_pkey IS 'one entry per chain position; gaps/duplicates detectable';

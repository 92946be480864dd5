-- 0014: every resource type a measure can retrieve reaches the engine, and results are
-- kept per population group.

-- Resources of the types without a typed table (ServiceRequest, DeviceRequest,
-- AllergyIntolerance, Medication, Location, ... any FHIR R4 type), kept whole: the line
-- is in staging.raw_line, this row says whose it is. source_patient_id is NULL for a
-- resource about no one patient (Medication, Location); a resource naming a patient who
-- is not loaded is quarantined instead. Like the typed tables after 0011, the loader
-- sets the reference columns from lookups in the chunk's transaction (no FK triggers);
-- edw::stats::orphans checks the invariant.
CREATE TABLE edw.resource (
    id                bigserial PRIMARY KEY,
    source            text   NOT NULL,
    resource_type     text   NOT NULL,
    source_id         text   NOT NULL,
    source_patient_id bigint,
    content_hash      text   NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint NOT NULL,
    line_no           bigint NOT NULL,
    UNIQUE (source, resource_type, source_id)
);
CREATE INDEX resource_patient ON edw.resource (source_patient_id) WHERE source_patient_id IS NOT NULL;
COMMENT ON INDEX edw.resource_patient IS 'per-patient reads (measures, FHIR API)';
CREATE INDEX resource_shared_type ON edw.resource (resource_type) WHERE source_patient_id IS NULL;
COMMENT ON INDEX edw.resource_shared_type IS 'measure: which retrieved types have resources about no patient';

ALTER TABLE edw.resource ENABLE ROW LEVEL SECURITY;
-- Patient rows follow their patient; shared rows (no patient) hold no PHI.
CREATE POLICY org_rows ON edw.resource FOR SELECT
    USING (source_patient_id IS NULL OR source_patient_id IN (SELECT id FROM edw.source_patient));
GRANT SELECT ON edw.resource TO edw_org_reader;

-- The groups of each measure as last run: `phm-edw results` and `report` read them, so
-- neither needs the package.
CREATE TABLE edw.measure_def (
    measure_id  text PRIMARY KEY,
    url         text,
    version     text,
    cms_id      text,
    title       text,
    definition  jsonb  NOT NULL,  -- the parsed Measure (ecqm::MeasureDef)
    -- [{"id", "populations": [code...], "improvement_notation"}] in Measure order
    groups      jsonb  NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON edw.measure_def TO edw_org_reader;

-- Results and gaps per group. Rows from before this migration belonged to the first
-- group; the first run after it is full (the run fingerprint changed) and sets rows of
-- groups the package no longer has to 0 / not-applicable.
ALTER TABLE edw.measure_result ADD COLUMN group_id text NOT NULL DEFAULT '';
ALTER TABLE edw.measure_result DROP CONSTRAINT measure_result_measure_id_period_start_person_id_population_key;
ALTER TABLE edw.measure_result ADD CONSTRAINT measure_result_key
    UNIQUE (measure_id, period_start, person_id, group_id, population);
ALTER TABLE edw.measure_result ALTER COLUMN group_id DROP DEFAULT;

ALTER TABLE edw.care_gap ADD COLUMN group_id text NOT NULL DEFAULT '';
ALTER TABLE edw.care_gap DROP CONSTRAINT care_gap_measure_id_period_start_person_id_key;
ALTER TABLE edw.care_gap ADD CONSTRAINT care_gap_key UNIQUE (measure_id, period_start, person_id, group_id);
ALTER TABLE edw.care_gap ALTER COLUMN group_id DROP DEFAULT;
-- DEQM's prospective-gap: open while the measurement period is still running.
ALTER TABLE edw.care_gap DROP CONSTRAINT care_gap_status_check;
ALTER TABLE edw.care_gap ADD CONSTRAINT care_gap_status_check
    CHECK (status IN ('open', 'closed', 'prospective', 'not-applicable'));

-- Stratifier values (per group) and supplemental data (per measure) of a person in the
-- initial population, as the engine gives them.
CREATE TABLE edw.measure_detail (
    person_id    bigint NOT NULL,
    measure_id   text   NOT NULL,
    period_start date   NOT NULL,
    strata       jsonb,
    sde          jsonb,
    change_no    bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    PRIMARY KEY (measure_id, period_start, person_id)
);
ALTER TABLE edw.measure_detail ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_rows ON edw.measure_detail FOR SELECT
    USING (person_id IN (SELECT id FROM edw.person));
GRANT SELECT ON edw.measure_detail TO edw_org_reader;

-- The star: one dim_measure row per measure and group, so every fact and aggregate
-- keyed by measure_key carries the group.
ALTER TABLE mart.dim_measure ADD COLUMN group_id text NOT NULL DEFAULT '';
ALTER TABLE mart.dim_measure DROP CONSTRAINT dim_measure_measure_id_key;
ALTER TABLE mart.dim_measure ADD CONSTRAINT dim_measure_key UNIQUE (measure_id, group_id);

-- The quality queries name the group beside the measure.
CREATE OR REPLACE VIEW mart.q_measure_rate_provider_month AS
SELECT pr.provider_key, pr.name AS provider_name, m.measure_id, a.year, a.month,
       a.met, a.eligible, round(a.met::numeric / a.eligible, 4) AS rate, m.group_id
FROM mart.agg_gap_provider_month a
JOIN mart.dim_provider pr ON pr.provider_key = a.provider_key
JOIN mart.dim_measure m ON m.measure_key = a.measure_key;

DROP FUNCTION mart.q_measure_trend(date);
CREATE FUNCTION mart.q_measure_trend(as_of date)
RETURNS TABLE (measure_id text, group_id text, month date, met bigint, eligible bigint, rate numeric)
LANGUAGE sql STABLE AS $$
    WITH months AS (
        SELECT (date_trunc('month', as_of) - make_interval(months => k))::date AS month
        FROM generate_series(0, 11) AS k),
    agg AS (
        SELECT g.measure_key, (g.date_key / 100) AS ym,
               count(*) FILTER (WHERE g.status = 'closed') AS met,
               count(*) FILTER (WHERE g.status IN ('open', 'closed', 'prospective')) AS eligible
        FROM mart.fact_care_gap g
        WHERE g.date_key >= to_char(date_trunc('month', as_of) - interval '11 months', 'YYYYMMDD')::int
          AND g.date_key < to_char(date_trunc('month', as_of) + interval '1 month', 'YYYYMMDD')::int
        GROUP BY 1, 2)
    SELECT m.measure_id, m.group_id, mo.month, coalesce(a.met, 0), coalesce(a.eligible, 0),
           round(a.met::numeric / nullif(a.eligible, 0), 4)
    FROM mart.dim_measure m CROSS JOIN months mo
    LEFT JOIN agg a ON a.measure_key = m.measure_key
                   AND a.ym = extract(year FROM mo.month)::int * 100 + extract(month FROM mo.month)::int
    ORDER BY m.measure_id, m.group_id, mo.month
$$;

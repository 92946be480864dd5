-- 0010: incremental `phm-edw measure`, and summary tables for quality queries (a) and (b).

-- One row per `phm-edw measure` run. A later run for the same period and fingerprint
-- (the packages' bytes and the options) only re-evaluates persons with source rows
-- changed after the last completed run's through_change_no; any other run is full.
CREATE TABLE edw.measure_run (
    id                bigserial PRIMARY KEY,
    period_start      date        NOT NULL,
    fingerprint       text        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    mode              text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    through_change_no bigint      NOT NULL,
    persons           bigint,
    started_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz
);
CREATE INDEX measure_run_last ON edw.measure_run (period_start, fingerprint, id DESC)
    WHERE completed_at IS NOT NULL;
COMMENT ON INDEX edw.measure_run_last IS 'the watermark of the last completed run of a period';

-- A person who leaves a measure's denominator keeps the gap row (the star and
-- workstations hold its id) with status not-applicable, DEQM's third gapStatus.
ALTER TABLE edw.care_gap DROP CONSTRAINT care_gap_status_check;
ALTER TABLE edw.care_gap ADD CONSTRAINT care_gap_status_check
    CHECK (status IN ('open', 'closed', 'not-applicable'));

-- (a) and (b) aggregated over every gap and every person's current attribution: at 1 M
-- patients that is millions of rows joined per call. The ETL rebuilds these (a few
-- thousand rows) when gaps, patients or attribution changed; the views read them.
CREATE TABLE mart.agg_gap_provider_month (
    provider_key bigint   NOT NULL REFERENCES mart.dim_provider (provider_key),
    measure_key  bigint   NOT NULL REFERENCES mart.dim_measure (measure_key),
    year         smallint NOT NULL,
    month        smallint NOT NULL,
    met          bigint   NOT NULL,
    eligible     bigint   NOT NULL,
    PRIMARY KEY (provider_key, measure_key, year, month)
);
CREATE TABLE mart.agg_open_gap_care_team (
    care_team_id bigint PRIMARY KEY REFERENCES edw.care_team (id),
    open_gaps    bigint NOT NULL,
    patients     bigint NOT NULL
);

CREATE OR REPLACE VIEW mart.q_measure_rate_provider_month AS
SELECT pr.provider_key, pr.name AS provider_name, m.measure_id, a.year, a.month,
       a.met, a.eligible, round(a.met::numeric / a.eligible, 4) AS rate
FROM mart.agg_gap_provider_month a
JOIN mart.dim_provider pr ON pr.provider_key = a.provider_key
JOIN mart.dim_measure m ON m.measure_key = a.measure_key;

CREATE OR REPLACE VIEW mart.q_open_gaps_care_team AS
SELECT ct.id AS care_team_id, ct.name AS care_team_name, a.open_gaps, a.patients
FROM mart.agg_open_gap_care_team a
JOIN edw.care_team ct ON ct.id = a.care_team_id;

-- (c) as in 0008, not counting not-applicable gaps as eligible.
CREATE OR REPLACE FUNCTION mart.q_measure_trend(as_of date)
RETURNS TABLE (measure_id text, month date, met bigint, eligible bigint, rate numeric)
LANGUAGE sql STABLE AS $$
    WITH months AS (
        SELECT (date_trunc('month', as_of) - make_interval(months => k))::date AS month
        FROM generate_series(0, 11) AS k),
    agg AS (
        SELECT g.measure_key, (g.date_key / 100) AS ym,
               count(*) FILTER (WHERE g.status = 'closed') AS met,
               count(*) FILTER (WHERE g.status IN ('open', 'closed')) AS eligible
        FROM mart.fact_care_gap g
        WHERE g.date_key >= to_char(date_trunc('month', as_of) - interval '11 months', 'YYYYMMDD')::int
          AND g.date_key < to_char(date_trunc('month', as_of) + interval '1 month', 'YYYYMMDD')::int
        GROUP BY 1, 2)
    SELECT m.measure_id, mo.month, coalesce(a.met, 0), coalesce(a.eligible, 0),
           round(a.met::numeric / nullif(a.eligible, 0), 4)
    FROM mart.dim_measure m CROSS JOIN months mo
    LEFT JOIN agg a ON a.measure_key = m.measure_key
                   AND a.ym = extract(year FROM mo.month)::int * 100 + extract(month FROM mo.month)::int
    ORDER BY m.measure_id, mo.month
$$;


-- 0008: the five analytics queries a quality team runs, over the mart star.
-- The star has no attribution or condition facts yet, so panels come from
-- edw.attribution (latest period per person) and diagnoses from edw.condition,
-- joined to the star through dim_patient.person_id.
-- "Rate" = closed / (open + closed) care gaps, i.e. patients meeting the measure's goal
-- among those in the denominator and not excluded; "month" = month the gap was detected
-- (mart.fact_care_gap.date_key), so each monthly `phm-edw measure` run is one point.

-- (e) per-patient open-gap counts are an index-only scan of this partial index.
CREATE INDEX fact_care_gap_open_patient ON mart.fact_care_gap (patient_key, measure_key) WHERE status = 'open';
COMMENT ON INDEX mart.fact_care_gap_open_patient IS 'patients with N open gaps; open gaps by team';
-- (a)/(c) month ranges of gaps read one index range, not the whole fact table.
CREATE INDEX fact_care_gap_date ON mart.fact_care_gap (date_key, measure_key) INCLUDE (status, patient_key);
COMMENT ON INDEX mart.fact_care_gap_date IS 'measure trend / rate by month';
-- current-attribution lookups per person (DISTINCT ON person_id ORDER BY period_end DESC).
CREATE INDEX attribution_person_period ON edw.attribution (person_id, period_end DESC) INCLUDE (practitioner_id, care_team_id);
COMMENT ON INDEX edw.attribution_person_period IS 'current attribution of a person (mart panels)';

-- Current attribution: one row per person, latest period.
CREATE VIEW mart.current_attribution AS
SELECT DISTINCT ON (a.person_id) a.person_id, a.practitioner_id, a.care_team_id, a.period_end
FROM edw.attribution a
ORDER BY a.person_id, a.period_end DESC, a.id DESC;

-- (a) measure rate by attributed provider by month.
CREATE VIEW mart.q_measure_rate_provider_month AS
SELECT pr.provider_key, pr.name AS provider_name, m.measure_id, d.year, d.month,
       count(*) FILTER (WHERE g.status = 'closed') AS met,
       count(*) AS eligible,
       round(count(*) FILTER (WHERE g.status = 'closed')::numeric / count(*), 4) AS rate
FROM mart.fact_care_gap g
JOIN mart.dim_patient p ON p.patient_key = g.patient_key
JOIN mart.current_attribution a ON a.person_id = p.person_id
JOIN mart.dim_provider pr ON pr.practitioner_id = a.practitioner_id
JOIN mart.dim_measure m ON m.measure_key = g.measure_key
JOIN mart.dim_date d ON d.date_key = g.date_key
GROUP BY pr.provider_key, pr.name, m.measure_id, d.year, d.month;

-- (b) open gaps by care team (of the patient's attributed provider).
CREATE VIEW mart.q_open_gaps_care_team AS
SELECT ct.id AS care_team_id, ct.name AS care_team_name,
       count(*) AS open_gaps, count(DISTINCT g.patient_key) AS patients
FROM mart.fact_care_gap g
JOIN mart.dim_patient p ON p.patient_key = g.patient_key
JOIN mart.current_attribution a ON a.person_id = p.person_id
JOIN edw.care_team ct ON ct.id = a.care_team_id
WHERE g.status = 'open'
GROUP BY ct.id, ct.name;

-- (c) trend over the 12 months ending with as_of's month, per measure (months with no
-- gaps recorded appear with eligible = 0 and rate NULL).
CREATE FUNCTION mart.q_measure_trend(as_of date)
RETURNS TABLE (measure_id text, month date, met bigint, eligible bigint, rate numeric)
LANGUAGE sql STABLE AS $$
    WITH months AS (
        SELECT (date_trunc('month', as_of) - make_interval(months => k))::date AS month
        FROM generate_series(0, 11) AS k),
    agg AS (
        SELECT g.measure_key, (g.date_key / 100) AS ym,
               count(*) FILTER (WHERE g.status = 'closed') AS met, count(*) AS eligible
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

-- (d) top conditions in one provider's panel (current attribution): distinct patients
-- per condition code, active or without a clinical status.
CREATE FUNCTION mart.q_panel_top_conditions(provider bigint, n integer)
RETURNS TABLE (code_system text, code text, display text, patients bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.code_system, c.code, min(c.display), count(DISTINCT sp.person_id)
    FROM mart.dim_provider pr
    JOIN edw.attribution a0 ON a0.practitioner_id = pr.practitioner_id
    JOIN mart.current_attribution a ON a.person_id = a0.person_id AND a.practitioner_id = pr.practitioner_id
    JOIN edw.source_patient sp ON sp.person_id = a.person_id
    JOIN edw.condition c ON c.source_patient_id = sp.id
    WHERE pr.provider_key = provider
      AND coalesce(c.clinical_status, 'active') IN ('active', 'recurrence', 'relapse')
    GROUP BY c.code_system, c.code
    ORDER BY 4 DESC, c.code_system, c.code
    LIMIT n
$$;

-- (e) patients (current version) with at least 3 open gaps.
CREATE VIEW mart.q_patients_3_open_gaps AS
SELECT g.patient_key, p.person_id, count(*) AS open_gaps
FROM mart.fact_care_gap g
JOIN mart.dim_patient p ON p.patient_key = g.patient_key
WHERE g.status = 'open'
GROUP BY g.patient_key, p.person_id
HAVING count(*) >= 3;

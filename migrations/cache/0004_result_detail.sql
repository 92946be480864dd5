-- PHM Workstation local cache, schema version 4: what reports and dashboards need from each
-- stored result without evaluating the patient again — its stratum values and supplemental
-- data — the history of each result (for the trend by month), and indexes for the dashboard's
-- reads. The results stored before this version lack strata and supplemental data; the
-- workstation's evaluation setup changed with it, so the next evaluation re-evaluates them.

-- Stratum values and supplemental data as JSON, stored once each (a panel has few distinct
-- values: sex, race, ethnicity and payer combinations).
CREATE TABLE result_value (
    id   INTEGER PRIMARY KEY,
    json TEXT NOT NULL UNIQUE
);

-- result_value ids: strata, a JSON array of [stratifier id, value]; sde, a JSON array of
-- [supplemental data id, the codes of its value] (the measure's, the same on each of its
-- group rows).
ALTER TABLE measure_result ADD COLUMN strata INTEGER;
ALTER TABLE measure_result ADD COLUMN sde INTEGER;

-- One measure's rows (and sums by population, strata, sde) without reading every row.
CREATE INDEX measure_result_measure
    ON measure_result(measure_id, group_id, ip, denom, denex, denexcep, numer, numex, strata, sde);

-- Each stored result over time: a row is valid from its day until the day it changed or the
-- patient left the panel (valid_to, exclusive; NULL while current).
CREATE TABLE measure_result_history (
    patient_id TEXT NOT NULL,
    measure_id TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    ip         INTEGER NOT NULL,
    denom      INTEGER NOT NULL,
    denex      INTEGER NOT NULL,
    denexcep   INTEGER NOT NULL,
    numer      INTEGER NOT NULL,
    numex      INTEGER NOT NULL,
    valid_from TEXT NOT NULL,          -- YYYY-MM-DD
    valid_to   TEXT,                   -- YYYY-MM-DD
    -- One measure's history is one range of the key (the trend reads it so); a patient's
    -- current rows are their measure_result rows, so no second index is kept up to date.
    PRIMARY KEY (measure_id, group_id, patient_id, valid_from)
) WITHOUT ROWID;

INSERT INTO measure_result_history(patient_id, measure_id, group_id, ip, denom, denex, denexcep,
        numer, numex, valid_from, valid_to)
SELECT r.patient_id, r.measure_id, r.group_id, r.ip, r.denom, r.denex, r.denexcep, r.numer,
       r.numex, substr(e.evaluated_at, 1, 10), NULL
FROM measure_result r JOIN eval_patient e ON e.patient_id = r.patient_id;

-- A provider's patients, and every patient's provider, from the index alone.
DROP INDEX patients_pcp;
CREATE INDEX patients_pcp ON patients(pcp_id, id);

-- The population page's visits per month: a range of the index, not a scan of every event.
CREATE INDEX events_kind_date ON events(kind, date, patient_id);

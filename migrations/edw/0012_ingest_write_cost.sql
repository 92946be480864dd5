-- 0012: less work per ingested row.
--
-- Code indexes on the 3NF clinical tables that no workload reads. The 3NF tables are
-- read per patient (measure, FHIR API, (d) top conditions: source_patient_id) and by
-- change_no (star ETL); population queries by code run on the star
-- (mart.fact_observation (code_key, date_key)). Every ingested row paid for these, and
-- edw.observation holds 60 % of the resources at 1 M patients.
DROP INDEX IF EXISTS edw.observation_code;
DROP INDEX IF EXISTS edw.condition_code;

-- Source Group members: like the clinical columns in 0011, both columns are set by the
-- loader from rows it reads in the same transaction (the group it upserts, the
-- source_patient it joins), groups and source patients are never deleted, and
-- edw::stats::orphans checks the invariant. The two per-row FK triggers were most of
-- the cost of a 1 M-member Group file.
ALTER TABLE edw.source_group_member
    DROP CONSTRAINT source_group_member_group_id_fkey,
    DROP CONSTRAINT source_group_member_source_patient_id_fkey;

-- 0013: the demographic tables are written only by the ingest loader, which sets
-- their keys from rows it reads in the same transaction: a history row's
-- source_patient_id is the id it just probed for the patient, a patient's org_id and
-- batch_id come from the lookup and the batch it runs. Source patients are never
-- deleted (a bad record is unlinked by matching, not removed), so the per-row FK
-- triggers only re-checked what the statement had just read; edw::stats::orphans
-- checks the invariant. Patients were the slowest lines to load (80 µs each).
ALTER TABLE edw.patient_identifier DROP CONSTRAINT patient_identifier_source_patient_id_fkey;
ALTER TABLE edw.patient_name DROP CONSTRAINT patient_name_source_patient_id_fkey;
ALTER TABLE edw.patient_address DROP CONSTRAINT patient_address_source_patient_id_fkey;
ALTER TABLE edw.patient_telecom DROP CONSTRAINT patient_telecom_source_patient_id_fkey;
ALTER TABLE edw.source_patient
    DROP CONSTRAINT source_patient_org_id_fkey,
    DROP CONSTRAINT source_patient_batch_id_fkey;

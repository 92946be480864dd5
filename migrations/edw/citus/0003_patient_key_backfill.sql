-- The keys of the records loaded before the warehouse was distributed (migration 1002).
INSERT INTO edw.patient_key (source, source_id, source_patient_id, person_id, org_id)
SELECT source, source_id, id, person_id, org_id FROM edw.source_patient;

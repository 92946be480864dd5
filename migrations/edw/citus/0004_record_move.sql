-- Where matching moved records from, for the star ETL (docs/scale-out.md, "The star on the
-- cluster"). On one node a fact is re-pointed by its own key when its record joins another
-- person; on the cluster the fact's key holds the person, so the copy on the old person's
-- shard must be found and deleted: `etl` reads the persons records left since its last run.
CREATE TABLE edw.record_move (
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq') PRIMARY KEY,
    source_patient_id bigint NOT NULL,
    from_person       bigint NOT NULL,
    to_person         bigint NOT NULL,
    moved_at          timestamptz NOT NULL DEFAULT now()
);

-- edw.move_records (migration 1002), now logging each move before the key follows it.
CREATE OR REPLACE FUNCTION edw.move_records(records bigint[], persons bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    target_cols text;
    moved_cols text;
    old_persons bigint[];
BEGIN
    SELECT array_agg(DISTINCT k.person_id) INTO old_persons
    FROM edw.patient_key k WHERE k.source_patient_id = ANY (records);
    FOREACH t IN ARRAY ARRAY['source_patient', 'patient_identifier', 'patient_name',
        'patient_address', 'patient_telecom', 'encounter', 'condition', 'observation',
        'procedure', 'medication_request', 'immunization', 'coverage', 'resource',
        'source_group_member']
    LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
               string_agg(CASE a.attname WHEN 'person_id' THEN 'x.new_person'
                                         WHEN 'change_no' THEN 'nextval(''edw.change_seq'')'
                                         ELSE 'x.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum)
        INTO target_cols, moved_cols
        FROM pg_attribute a
        WHERE a.attrelid = format('edw.%I', t)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('WITH moved AS (
                          DELETE FROM edw.%1$I x USING unnest($1, $2) AS m(record, person_id)
                          WHERE x.%2$I = m.record AND x.person_id <> m.person_id
                          RETURNING x.*, m.person_id AS new_person)
                        INSERT INTO edw.%1$I (%3$s) SELECT %4$s FROM moved x',
                       t, CASE t WHEN 'source_patient' THEN 'id' ELSE 'source_patient_id' END,
                       target_cols, moved_cols)
        USING records, persons;
    END LOOP;
    INSERT INTO edw.record_move (source_patient_id, from_person, to_person)
    SELECT k.source_patient_id, k.person_id, m.person_id
    FROM edw.patient_key k JOIN unnest(records, persons) AS m(record, person_id)
      ON k.source_patient_id = m.record
    WHERE k.person_id <> m.person_id;
    UPDATE edw.patient_key k SET person_id = m.person_id
    FROM unnest(records, persons) AS m(record, person_id) WHERE k.source_patient_id = m.record;
    PERFORM edw.copy_orgs(records, old_persons || persons);
END $$;

-- What the loader and the matcher write through on the distributed warehouse
-- (docs/scale-out.md, "Writing on the cluster").

-- A source's patient id → its record, person and organisation, on the coordinator. On one
-- node the loader finds a record by (source, source_id) in edw.source_patient; on the cluster
-- that key no longer holds the shard key, so finding it there would ask every shard once per
-- loaded line. Written by the loader (a new record, a changed organisation) and the matcher
-- (a record's person), in the transaction that writes the record.
CREATE TABLE edw.patient_key (
    source            text   NOT NULL,
    source_id         text   NOT NULL,
    source_patient_id bigint NOT NULL UNIQUE,
    person_id         bigint NOT NULL,
    org_id            bigint,
    PRIMARY KEY (source, source_id)
);
CREATE INDEX patient_key_person ON edw.patient_key (person_id);

-- The organisations row-level security reads (migration 1001, step 3), copied again after the
-- loader changes a record's organisation or the matcher moves records between persons: org_id
-- on the given records' rows, org_ids on the given persons' rows.
CREATE FUNCTION edw.copy_orgs(records bigint[], persons bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['source_patient', 'patient_identifier', 'patient_name',
        'patient_address', 'patient_telecom', 'encounter', 'condition', 'observation',
        'procedure', 'medication_request', 'immunization', 'coverage', 'resource',
        'source_group_member']
    LOOP
        EXECUTE format('UPDATE edw.%I x SET org_id = k.org_id FROM edw.patient_key k
                        WHERE k.source_patient_id = ANY ($1) AND x.%I = k.source_patient_id
                          AND x.person_id = k.person_id AND x.org_id IS DISTINCT FROM k.org_id',
                       t, CASE t WHEN 'source_patient' THEN 'id' ELSE 'source_patient_id' END)
        USING records;
    END LOOP;
    CREATE TEMP TABLE IF NOT EXISTS person_orgs (person_id bigint PRIMARY KEY, org_ids bigint[] NOT NULL)
        ON COMMIT DELETE ROWS;
    DELETE FROM person_orgs;
    INSERT INTO person_orgs
    SELECT p, coalesce((SELECT array_agg(DISTINCT k.org_id ORDER BY k.org_id) FROM edw.patient_key k
                        WHERE k.person_id = p AND k.org_id IS NOT NULL), '{}')
    FROM (SELECT DISTINCT unnest(persons) AS p) q;
    FOREACH t IN ARRAY ARRAY['person', 'attribution', 'measure_result', 'measure_detail',
        'care_gap', 'patient_group_member', 'patient_group_left']
    LOOP
        EXECUTE format('UPDATE edw.%I x SET org_ids = o.org_ids FROM person_orgs o
                        WHERE x.%I = o.person_id AND x.org_ids IS DISTINCT FROM o.org_ids',
                       t, CASE t WHEN 'person' THEN 'id' ELSE 'person_id' END);
    END LOOP;
END $$;

-- The matcher's re-link: records[i] now belongs to persons[i]. Citus does not update a shard
-- key, so every row of the record moves: deleted from the old person's shard and inserted on
-- the new one's with a new change number, in the caller's transaction. Then the key and the
-- organisations that row-level security reads follow.
CREATE FUNCTION edw.move_records(records bigint[], persons bigint[]) RETURNS void
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
    UPDATE edw.patient_key k SET person_id = m.person_id
    FROM unnest(records, persons) AS m(record, person_id) WHERE k.source_patient_id = m.record;
    PERFORM edw.copy_orgs(records, old_persons || persons);
END $$;

-- The keys of the records already loaded: migration 1003, in a transaction of its own (Citus
-- creates the functions above on every node; reading a distributed table after that in the
-- same transaction returned every record twice).

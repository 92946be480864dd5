-- 0003: row-level security. A database role mapped to an organisation (edw.org_role)
-- sees only the patients whose managing organisation is that organisation, and
-- only their clinical rows. Table owners / the loader (BYPASSRLS or superuser) see all.

CREATE TABLE edw.org_role (
    role_name text   NOT NULL,
    org_id    bigint NOT NULL REFERENCES edw.organization (id),
    PRIMARY KEY (role_name, org_id)
);

-- Organisations visible to the current role (membership in edw.org_role).
CREATE FUNCTION edw.visible_org_ids() RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(org_id), '{}') FROM edw.org_role WHERE role_name = current_user
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'edw_org_reader') THEN
        CREATE ROLE edw_org_reader NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA edw TO edw_org_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA edw TO edw_org_reader;

ALTER TABLE edw.source_patient ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_patients ON edw.source_patient FOR SELECT
    USING (org_id = ANY (edw.visible_org_ids()));

ALTER TABLE edw.person ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_persons ON edw.person FOR SELECT
    USING (id IN (SELECT person_id FROM edw.source_patient));   -- source_patient's policy applies

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['patient_identifier', 'patient_name', 'patient_address',
        'patient_telecom', 'coverage', 'encounter', 'condition', 'observation', 'procedure',
        'medication_request', 'immunization']
    LOOP
        EXECUTE format('ALTER TABLE edw.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_rows ON edw.%I FOR SELECT
            USING (source_patient_id IN (SELECT id FROM edw.source_patient))', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['attribution', 'measure_result', 'care_gap', 'worklist_action']
    LOOP
        EXECUTE format('ALTER TABLE edw.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_rows ON edw.%I FOR SELECT
            USING (person_id IN (SELECT id FROM edw.person))', t);
    END LOOP;
END
$$;

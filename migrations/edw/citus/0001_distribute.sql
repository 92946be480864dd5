-- The distributed form of the warehouse on Citus (docs/scale-out.md), applied by
-- `phm-edw migrate --citus` on the coordinator after the ordinary migrations, on an empty or a
-- loaded database. One transaction: it applies whole or not at all.
--
-- Distributed by person and co-located with edw.person: every table about one person.
-- Reference tables (a copy on every node): the small provider, code and dimension tables.
-- Local to the coordinator: staging, quarantine, matching, runs, jobs, clients, audit.

-- Foreign keys to reference tables are checked over one connection per node: the whole
-- transaction must use one.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

-- Rows about no patient (Medication, Location in edw.resource) get person 0, one shard.
DO $$
DECLARE
    t text;
BEGIN
    -- 1. The person on every row about a person (redundant on one node; the shard key here).
    FOREACH t IN ARRAY ARRAY['patient_identifier', 'patient_name', 'patient_address',
        'patient_telecom', 'encounter', 'condition', 'observation', 'procedure',
        'medication_request', 'immunization', 'coverage', 'resource', 'source_group_member']
    LOOP
        EXECUTE format('ALTER TABLE edw.%I ADD COLUMN IF NOT EXISTS person_id bigint', t);
        EXECUTE format('UPDATE edw.%I x SET person_id = sp.person_id FROM edw.source_patient sp
                        WHERE sp.id = x.source_patient_id AND x.person_id IS DISTINCT FROM sp.person_id', t);
    END LOOP;
    UPDATE edw.resource SET person_id = 0 WHERE source_patient_id IS NULL;
    FOREACH t IN ARRAY ARRAY['fact_encounter', 'fact_observation', 'fact_measure_result', 'fact_care_gap']
    LOOP
        EXECUTE format('ALTER TABLE mart.%I ADD COLUMN IF NOT EXISTS person_id bigint', t);
        EXECUTE format('UPDATE mart.%I f SET person_id = d.person_id FROM mart.dim_patient d
                        WHERE d.patient_key = f.patient_key', t);
    END LOOP;
    IF EXISTS (SELECT 1 FROM edw.source_patient WHERE person_id IS NULL) THEN
        RAISE EXCEPTION 'some patient records have no person yet: run phm-edw match, then migrate --citus again';
    END IF;
END $$;

-- 2. Keys. Citus enforces a unique key on a distributed table only when it holds the shard
-- key, and a foreign key between nodes only to a reference table or within one person's
-- shard: the keys gain person_id, and the foreign keys the loader keeps true are dropped.
CREATE TEMP TABLE citus_layout (tbl regclass PRIMARY KEY, kind text NOT NULL) ON COMMIT DROP;
INSERT INTO citus_layout
SELECT t::regclass, 'distributed' FROM unnest(ARRAY[
    'edw.person', 'edw.source_patient', 'edw.patient_identifier', 'edw.patient_name',
    'edw.patient_address', 'edw.patient_telecom', 'edw.encounter', 'edw.condition',
    'edw.observation', 'edw.procedure', 'edw.medication_request', 'edw.immunization',
    'edw.coverage', 'edw.resource', 'edw.source_group_member', 'edw.attribution',
    'edw.measure_result', 'edw.measure_detail', 'edw.care_gap', 'edw.patient_group_member',
    'edw.patient_group_left', 'mart.dim_patient', 'mart.fact_encounter', 'mart.fact_observation',
    'mart.fact_measure_result', 'mart.fact_care_gap']) t
UNION ALL
SELECT t::regclass, 'reference' FROM unnest(ARRAY[
    'edw.code_system', 'edw.value_set', 'edw.value_set_code', 'edw.organization',
    'edw.practitioner', 'edw.practitioner_specialty', 'edw.care_team', 'edw.care_team_member',
    'edw.source_group', 'edw.patient_group', 'edw.org_role', 'edw.measure_def',
    'mart.dim_date', 'mart.dim_provider', 'mart.dim_organization', 'mart.dim_measure',
    'mart.dim_code']) t;
CREATE TEMP TABLE citus_foreign_key (tbl regclass, name text, def text) ON COMMIT DROP;

DO $$
DECLARE
    c record;
    cols text;
BEGIN
    -- Foreign keys: all dropped here; the ones from a distributed or reference table to a
    -- reference table come back once the tables are placed (step 5).
    INSERT INTO citus_foreign_key
    SELECT k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)
    FROM pg_constraint k
    JOIN citus_layout src ON src.tbl = k.conrelid
    JOIN citus_layout dst ON dst.tbl = k.confrelid AND dst.kind = 'reference'
    WHERE k.contype = 'f';
    FOR c IN
        SELECT k.conrelid::regclass AS tbl, k.conname
        FROM pg_constraint k
        LEFT JOIN citus_layout src ON src.tbl = k.conrelid
        LEFT JOIN citus_layout dst ON dst.tbl = k.confrelid
        WHERE k.contype = 'f' AND (src.tbl IS NOT NULL OR dst.tbl IS NOT NULL)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
    END LOOP;
    -- Primary and unique keys of the distributed tables gain the shard key.
    FOR c IN
        SELECT k.conrelid::regclass AS tbl, k.conname, k.contype,
               (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.ord)
                FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum) AS cols,
               l.tbl = 'edw.person'::regclass AS is_person
        FROM pg_constraint k JOIN citus_layout l ON l.tbl = k.conrelid AND l.kind = 'distributed'
        WHERE k.contype IN ('p', 'u')
    LOOP
        CONTINUE WHEN c.is_person;
        CONTINUE WHEN c.cols ~ '(^|, )person_id(,|$)';
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s (%s, person_id)', c.tbl, c.conname,
                       CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, c.cols);
    END LOOP;
END $$;

-- 3. Row-level security without subqueries (Citus evaluates a policy on each shard, alone):
-- each row carries the organisations that may see it, as on one node: a patient record's own
-- organisation (org_id), and for what is about a person, the organisations of its records
-- (org_ids). The policies then test them against edw.visible_org_ids(), which reads the
-- reference table edw.org_role on the node itself.
DO $$
DECLARE
    t text;
    p record;
BEGIN
    FOR p IN
        SELECT pol.polname, pol.polrelid::regclass AS tbl
        FROM pg_policy pol JOIN citus_layout l ON l.tbl = pol.polrelid AND l.kind = 'distributed'
    LOOP
        EXECUTE format('DROP POLICY %I ON %s', p.polname, p.tbl);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['patient_identifier', 'patient_name', 'patient_address',
        'patient_telecom', 'encounter', 'condition', 'observation', 'procedure',
        'medication_request', 'immunization', 'coverage', 'resource', 'source_group_member']
    LOOP
        EXECUTE format('ALTER TABLE edw.%I ADD COLUMN IF NOT EXISTS org_id bigint', t);
        EXECUTE format('UPDATE edw.%I x SET org_id = sp.org_id FROM edw.source_patient sp
                        WHERE sp.id = x.source_patient_id AND x.org_id IS DISTINCT FROM sp.org_id', t);
        EXECUTE format('CREATE POLICY org_rows ON edw.%I FOR SELECT
                        USING (org_id = ANY (edw.visible_org_ids()))', t);
    END LOOP;
    CREATE POLICY org_patients ON edw.source_patient FOR SELECT
        USING (org_id = ANY (edw.visible_org_ids()));
    FOREACH t IN ARRAY ARRAY['person', 'attribution', 'measure_result', 'measure_detail', 'care_gap',
        'patient_group_member', 'patient_group_left']
    LOOP
        EXECUTE format('ALTER TABLE edw.%I ADD COLUMN IF NOT EXISTS org_ids bigint[] NOT NULL DEFAULT %L',
                       t, '{}');
        EXECUTE format('UPDATE edw.%I x SET org_ids = o.ids
                        FROM (SELECT person_id, array_agg(DISTINCT org_id ORDER BY org_id) ids
                              FROM edw.source_patient WHERE org_id IS NOT NULL GROUP BY person_id) o
                        WHERE o.person_id = x.%I', t, CASE t WHEN 'person' THEN 'id' ELSE 'person_id' END);
        IF EXISTS (SELECT 1 FROM pg_class WHERE oid = format('edw.%I', t)::regclass AND relrowsecurity) THEN
            EXECUTE format('CREATE POLICY org_rows ON edw.%I FOR SELECT
                            USING (org_ids && edw.visible_org_ids())', t);
        END IF;
    END LOOP;
END $$;

-- 4. Placement: the reference tables (foreign keys point at them), then edw.person and every
-- other distributed table in its co-location group.
SELECT create_reference_table(tbl) FROM citus_layout WHERE kind = 'reference' ORDER BY tbl::text;
SELECT create_distributed_table('edw.person', 'id');
SELECT create_distributed_table(tbl, 'person_id', colocate_with => 'edw.person')
FROM citus_layout WHERE kind = 'distributed' AND tbl <> 'edw.person'::regclass ORDER BY tbl::text;
-- The coordinator's local copies of rows now on the shards.
SELECT truncate_local_data_after_distributing_table(tbl) FROM citus_layout ORDER BY tbl::text;

-- 5. edw.visible_org_ids() reads edw.org_role's placement on the node it runs on. A policy is
-- evaluated on each shard, where reading the table through Citus would be a distributed query
-- nested in a shard's query; a reference table's placement is the same on every node and is
-- written on all of them in one transaction.
DO $do$
DECLARE
    shard bigint := (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'edw.org_role'::regclass);
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION edw.visible_org_ids() RETURNS bigint[]
        LANGUAGE sql STABLE AS $b$
            SELECT coalesce(array_agg(org_id), '{}') FROM edw.%I WHERE role_name = current_user
        $b$ $f$, 'org_role_' || shard);
END $do$;

-- 6. The foreign keys Citus enforces across nodes: to a reference table.
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN SELECT * FROM citus_foreign_key ORDER BY tbl::text, name LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', k.tbl, k.name, k.def);
    END LOOP;
END $$;

-- 7. The quality queries (migrations 0008–0010) in the forms Citus plans (docs/scale-out.md):
-- PL/pgSQL instead of SQL functions with parameters, and joins to the patient on the person.
CREATE OR REPLACE FUNCTION mart.q_measure_trend(as_of date)
RETURNS TABLE (measure_id text, group_id text, month date, met bigint, eligible bigint, rate numeric)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
    ORDER BY m.measure_id, m.group_id, mo.month;
END $$;

CREATE OR REPLACE FUNCTION mart.q_panel_top_conditions(provider bigint, n integer)
RETURNS TABLE (code_system text, code text, display text, patients bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH panel AS (
        SELECT DISTINCT a.person_id
        FROM mart.dim_provider pr
        JOIN edw.attribution a ON a.practitioner_id = pr.practitioner_id
        WHERE pr.provider_key = provider
          AND NOT EXISTS (
              SELECT 1 FROM edw.attribution l
              WHERE l.person_id = a.person_id
                AND (l.period_end > a.period_end OR (l.period_end = a.period_end AND l.id > a.id))))
    SELECT c.code_system, c.code, min(c.display), count(DISTINCT sp.person_id)
    FROM panel
    JOIN edw.source_patient sp ON sp.person_id = panel.person_id
    JOIN edw.condition c ON c.source_patient_id = sp.id AND c.person_id = sp.person_id
    WHERE coalesce(c.clinical_status, 'active') IN ('active', 'recurrence', 'relapse')
    GROUP BY c.code_system, c.code
    ORDER BY 4 DESC, c.code_system, c.code
    LIMIT n;
END $$;

CREATE OR REPLACE VIEW mart.q_patients_3_open_gaps AS
SELECT g.patient_key, p.person_id, count(*) AS open_gaps
FROM mart.fact_care_gap g
JOIN mart.dim_patient p ON p.patient_key = g.patient_key AND p.person_id = g.person_id
WHERE g.status = 'open'
GROUP BY g.patient_key, p.person_id
HAVING count(*) >= 3;

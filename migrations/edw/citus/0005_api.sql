-- The API on the cluster (docs/scale-out.md, "The API on the cluster").

-- 1. Organisation roles. The server
-- reads as an organisation's role (SET ROLE), and Citus opens its connections to the workers
-- as the current role, so that role must be able to log in to the workers. It gets LOGIN with
-- a random password that is shown to nobody: the coordinator keeps it in pg_dist_authinfo
-- (readable by superusers only), which Citus reads for its own node connections. A client or
-- person that tries the role's name without the password is refused by the nodes' pg_hba.conf
-- (scram-sha-256 for members of edw_org_reader).
CREATE FUNCTION edw.org_role_node_login(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    -- 244 random bits (gen_random_uuid draws from the server's strong random source).
    secret text := encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text,
                                            'UTF8')), 'hex');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name AND NOT r.rolsuper
                   AND pg_has_role(r.oid, 'edw_org_reader', 'MEMBER')) THEN
        RAISE EXCEPTION 'org_role_node_login: % is not an organisation role', role_name;
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', role_name, secret);
    DELETE FROM pg_catalog.pg_dist_authinfo WHERE rolename = role_name AND nodeid = 0;
    INSERT INTO pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo)
    VALUES (0, role_name, 'password=' || secret);
END $$;
REVOKE ALL ON FUNCTION edw.org_role_node_login(text) FROM PUBLIC;

-- The organisation roles made before the warehouse was distributed.
SELECT edw.org_role_node_login(r.rolname)
FROM pg_roles r
WHERE r.rolname IN (SELECT role_name FROM edw.org_role)
  AND NOT r.rolsuper AND pg_has_role(r.oid, 'edw_org_reader', 'MEMBER');

-- 2. Resources about no patient (Medication, Location; person 0) hold no PHI and are read by
-- every organisation, as on one node (migration 0014); migration 1001 had made them visible
-- to none, since they have no organisation.
-- (Through EXECUTE: Citus sends a policy's command to the workers as the text it was given,
-- which here would be this whole file.)
DO $$
BEGIN
    EXECUTE 'DROP POLICY org_rows ON edw.resource';
    EXECUTE 'CREATE POLICY org_rows ON edw.resource FOR SELECT
        USING (source_patient_id IS NULL OR org_id = ANY (edw.visible_org_ids()))';
END $$;

-- 3. Worklist actions stay on the coordinator (few rows, one action id unique across all
-- persons). Their policies asked whether the person is visible with a subquery on
-- edw.person, which Citus does not join to a local table; the same question through a
-- function is one read routed to the person's shard per row, under the caller's policies.
CREATE FUNCTION edw.person_visible(p bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM edw.person WHERE id = p);
END $$;
DO $$
BEGIN
    EXECUTE 'DROP POLICY org_rows ON edw.worklist_action';
    EXECUTE 'CREATE POLICY org_rows ON edw.worklist_action FOR SELECT
        USING (edw.person_visible(person_id))';
    EXECUTE 'DROP POLICY org_insert ON edw.worklist_action';
    EXECUTE 'CREATE POLICY org_insert ON edw.worklist_action FOR INSERT TO edw_org_reader
        WITH CHECK (edw.person_visible(person_id))';
END $$;

-- 4. edw.persons_without_records (migration 0016) in a form Citus plans: PL/pgSQL, and the
-- persons with records read from their shards first instead of a subquery per id.
CREATE OR REPLACE FUNCTION edw.persons_without_records(ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, edw AS $$
BEGIN
    RETURN QUERY
    SELECT u.x FROM unnest(ids) AS u(x)
    EXCEPT
    SELECT sp.person_id FROM edw.source_patient sp WHERE sp.person_id = ANY (ids);
END $$;

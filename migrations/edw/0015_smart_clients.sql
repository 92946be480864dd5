-- 0015: SMART Backend Services clients, their access tokens, per-organisation roles for
-- the server's queries, worklist action write-back by action UUID, audit chain alerts.
-- Row-level security is FORCEd everywhere it is enabled, so not even a table owner
-- bypasses it (superusers and BYPASSRLS roles, i.e. the loaders, still do).

CREATE SCHEMA auth;

-- Roles: `edw_api` is what the serving login role is a member of (token lookup, PHI
-- access log, readiness). It is NOINHERIT: the organisation roles granted to it can be
-- SET ROLE to, but their privileges (and row visibility) never apply to it implicitly.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'edw_api') THEN
        CREATE ROLE edw_api NOLOGIN NOINHERIT;
    END IF;
END
$$;

CREATE TABLE auth.client (
    id         text PRIMARY KEY,                     -- random, made by `phm-edw client add`
    name       text NOT NULL,
    org_id     bigint NOT NULL REFERENCES edw.organization (id),
    org_role   text NOT NULL,                        -- edw_org_<org_id>
    jwks       jsonb,                                -- inline JWKS (public keys only)
    jwks_url   text,                                 -- or fetched over HTTPS
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
);

CREATE TABLE auth.client_group (
    client_id text   NOT NULL REFERENCES auth.client (id) ON DELETE CASCADE,
    group_id  bigint NOT NULL REFERENCES edw.patient_group (id) ON DELETE CASCADE,
    PRIMARY KEY (client_id, group_id)
);

-- Assertion ids seen, kept until the assertion could no longer be accepted anyway.
CREATE TABLE auth.used_jti (
    client_id  text NOT NULL REFERENCES auth.client (id) ON DELETE CASCADE,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_jti_expires ON auth.used_jti (expires_at);
COMMENT ON INDEX auth.used_jti_expires IS 'the token endpoint deletes expired assertion ids';

-- Access tokens by SHA-256: a database read never yields a usable token.
CREATE TABLE auth.access_token (
    token_sha256 bytea PRIMARY KEY,
    client_id    text NOT NULL REFERENCES auth.client (id) ON DELETE CASCADE,
    scopes       text[] NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX access_token_client ON auth.access_token (client_id);
COMMENT ON INDEX auth.access_token_client IS 'revoking a client deletes its tokens';
CREATE INDEX access_token_expires ON auth.access_token (expires_at);
COMMENT ON INDEX auth.access_token_expires IS 'the token endpoint deletes expired tokens';

GRANT USAGE ON SCHEMA auth, audit TO edw_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA auth TO edw_api;
GRANT SELECT ON public.schema_migrations TO edw_api;
GRANT INSERT ON audit.phi_access TO edw_api, edw_org_reader;
GRANT USAGE ON SEQUENCE audit.phi_access_id_seq TO edw_api, edw_org_reader;
GRANT USAGE ON SCHEMA audit, auth TO edw_org_reader;
-- The organisation roles see which clients are theirs (for the audit chain policy).
GRANT SELECT (id, org_role) ON auth.client TO edw_org_reader;

-- Month partitions are made by the server on start, whatever role it logs in as.
ALTER FUNCTION audit.ensure_phi_access_partition(timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, audit;
REVOKE EXECUTE ON FUNCTION audit.ensure_phi_access_partition(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.ensure_phi_access_partition(timestamptz) TO edw_api;

-- Worklist actions written back by action UUID (idempotent; a different payload under
-- the same id is a conflict). The old (workstation_id, event_id) columns are kept:
-- workstation_id = client id, event_id = the action UUID as text.
ALTER TABLE edw.worklist_action
    ADD COLUMN action_id      uuid UNIQUE,
    ADD COLUMN payload_sha256 text,
    ADD COLUMN client_id      text REFERENCES auth.client (id),
    ADD COLUMN username       text,
    ADD COLUMN measure_id     text,
    ADD COLUMN group_id       text,
    ADD COLUMN body           jsonb;
CREATE POLICY org_insert ON edw.worklist_action FOR INSERT TO edw_org_reader
    WITH CHECK (person_id IN (SELECT id FROM edw.person));
GRANT INSERT ON edw.worklist_action TO edw_org_reader;
GRANT USAGE ON SEQUENCE edw.worklist_action_id_seq TO edw_org_reader;

-- Workstation audit chains: an organisation role reads and appends its own clients'.
ALTER TABLE audit.workstation_chain ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_chain ON audit.workstation_chain FOR ALL TO edw_org_reader
    USING (workstation_id IN (SELECT c.id FROM auth.client c WHERE c.org_role = current_user))
    WITH CHECK (workstation_id IN (SELECT c.id FROM auth.client c WHERE c.org_role = current_user));
GRANT SELECT, INSERT ON audit.workstation_chain TO edw_org_reader;

-- A segment refused because the chain broke or was rewound: for the privacy officer.
CREATE TABLE audit.chain_alert (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    workstation_id text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('broken', 'rewound')),
    seq            bigint,              -- first offending chain position
    reason         text NOT NULL,       -- PHI-free
    held_seq       bigint NOT NULL,     -- the head the EDW held
    held_hash      text NOT NULL,
    received_hash  text
);
CREATE INDEX chain_alert_at ON audit.chain_alert (at);
COMMENT ON INDEX audit.chain_alert_at IS 'the privacy officer reviews alerts by time';
GRANT INSERT ON audit.chain_alert TO edw_org_reader, edw_api;
GRANT USAGE ON SEQUENCE audit.chain_alert_id_seq TO edw_org_reader, edw_api;

-- FORCE row-level security on every table that has it.
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relrowsecurity AND n.nspname IN ('edw', 'mart', 'audit', 'staging', 'auth')
    LOOP
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;

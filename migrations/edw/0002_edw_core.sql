-- 0002: the 3NF warehouse (edw schema).
-- Conventions: every clinical/administrative row has a natural key (source, source_id)
-- = (feed name, FHIR resource id); surrogate bigint ids are for joins only.
-- content_hash is the sha256 of the canonical resource JSON: upserts only touch a row
-- when it changed, and change_no (from one global sequence) is the ETL watermark.

CREATE SEQUENCE edw.change_seq;

-- Normalise a FHIR reference ("Patient/123", "urn:uuid:123", absolute URL) to its id.
CREATE FUNCTION edw.ref_id(r text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN r IS NULL THEN NULL
        WHEN r LIKE 'urn:uuid:%' THEN substr(r, 10)
        ELSE regexp_replace(regexp_replace(r, '/_history/.*$', ''), '^.*/', '')
    END
$$;

-- FHIR date/dateTime (possibly partial: YYYY, YYYY-MM) to timestamptz (UTC when no zone).
CREATE FUNCTION edw.fhir_ts(t text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t IS NULL THEN NULL
        WHEN length(t) = 4 THEN (t || '-01-01T00:00:00Z')::timestamptz
        WHEN length(t) = 7 THEN (t || '-01T00:00:00Z')::timestamptz
        WHEN length(t) = 10 THEN (t || 'T00:00:00Z')::timestamptz
        ELSE t::timestamptz
    END
$$;

CREATE FUNCTION edw.fhir_date(t text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t IS NULL THEN NULL
        WHEN length(t) = 4 THEN (t || '-01-01')::date
        WHEN length(t) = 7 THEN (t || '-01')::date
        ELSE left(t, 10)::date
    END
$$;

---------------------------------------------------------------- reference data
CREATE TABLE edw.code_system (
    url      text PRIMARY KEY,
    name     text NOT NULL,
    version  text
);
INSERT INTO edw.code_system (url, name) VALUES
    ('http://snomed.info/sct', 'SNOMED CT'),
    ('http://loinc.org', 'LOINC'),
    ('http://www.nlm.nih.gov/research/umls/rxnorm', 'RxNorm'),
    ('http://hl7.org/fhir/sid/cvx', 'CVX'),
    ('http://hl7.org/fhir/sid/icd-10-cm', 'ICD-10-CM'),
    ('http://www.ama-assn.org/go/cpt', 'CPT'),
    ('http://unitsofmeasure.org', 'UCUM'),
    ('http://terminology.hl7.org/CodeSystem/v3-ActCode', 'HL7 v3 ActCode'),
    ('http://nucc.org/provider-taxonomy', 'NUCC Provider Taxonomy'),
    ('http://hl7.org/fhir/sid/us-npi', 'NPI'),
    ('http://hl7.org/fhir/sid/us-ssn', 'SSN')
ON CONFLICT DO NOTHING;

CREATE TABLE edw.value_set (
    id       bigserial PRIMARY KEY,
    url      text NOT NULL,
    version  text NOT NULL DEFAULT '',
    name     text,
    UNIQUE (url, version)
);
CREATE TABLE edw.value_set_code (
    value_set_id bigint NOT NULL REFERENCES edw.value_set (id) ON DELETE CASCADE,
    system   text NOT NULL,
    code     text NOT NULL,
    display  text,
    PRIMARY KEY (value_set_id, system, code)
);
CREATE INDEX value_set_code_code ON edw.value_set_code (system, code);
COMMENT ON INDEX edw.value_set_code_code IS 'reverse lookup: which value sets contain a coded fact';

---------------------------------------------------------------- providers
CREATE TABLE edw.organization (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    source_id    text NOT NULL,
    name         text,
    npi          text,
    type_code    text,
    active       boolean,
    content_hash text NOT NULL,
    change_no    bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id     bigint REFERENCES staging.load_batch (id),
    line_no      bigint,
    UNIQUE (source, source_id)
);

CREATE TABLE edw.practitioner (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    source_id    text NOT NULL,
    npi          text,
    family       text,
    given        text,
    active       boolean,
    content_hash text NOT NULL,
    change_no    bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id     bigint REFERENCES staging.load_batch (id),
    line_no      bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX practitioner_npi ON edw.practitioner (npi) WHERE npi IS NOT NULL;
COMMENT ON INDEX edw.practitioner_npi IS 'cross-source provider lookup by NPI';

CREATE TABLE edw.practitioner_specialty (
    practitioner_id bigint NOT NULL REFERENCES edw.practitioner (id) ON DELETE CASCADE,
    system   text NOT NULL,
    code     text NOT NULL,
    display  text,
    PRIMARY KEY (practitioner_id, system, code)
);

CREATE TABLE edw.care_team (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,
    source_id       text NOT NULL,
    name            text,
    organization_id bigint REFERENCES edw.organization (id),
    content_hash    text NOT NULL,
    change_no       bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id        bigint REFERENCES staging.load_batch (id),
    line_no         bigint,
    UNIQUE (source, source_id)
);
CREATE TABLE edw.care_team_member (
    care_team_id    bigint NOT NULL REFERENCES edw.care_team (id) ON DELETE CASCADE,
    practitioner_id bigint NOT NULL REFERENCES edw.practitioner (id),
    role_code       text NOT NULL DEFAULT '',
    PRIMARY KEY (care_team_id, practitioner_id, role_code)
);
CREATE INDEX care_team_member_practitioner ON edw.care_team_member (practitioner_id);
COMMENT ON INDEX edw.care_team_member_practitioner IS 'attribution: practitioner -> care teams';

---------------------------------------------------------------- patients
-- The enterprise person: a cluster of source patient records (see edw.match_link).
CREATE TABLE edw.person (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per patient record in a source; linked to a person by matching.
CREATE TABLE edw.source_patient (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    source_id    text NOT NULL,
    person_id    bigint REFERENCES edw.person (id),
    org_id       bigint REFERENCES edw.organization (id),   -- managingOrganization; drives RLS
    birth_date   date,
    sex          text CHECK (sex IN ('male', 'female', 'other', 'unknown')),
    deceased     boolean,
    active       boolean,
    content_hash text NOT NULL,
    change_no    bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id     bigint REFERENCES staging.load_batch (id),
    line_no      bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX source_patient_person ON edw.source_patient (person_id);
COMMENT ON INDEX edw.source_patient_person IS 'person -> its source records (FHIR read, mart ETL)';
CREATE INDEX source_patient_org ON edw.source_patient (org_id);
COMMENT ON INDEX edw.source_patient_org IS 'row-level security predicate: org -> patients';

-- Demographic history: one row per distinct value ever seen; valid_to IS NULL = current.
CREATE TABLE edw.patient_identifier (
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    system     text NOT NULL DEFAULT '',
    value      text NOT NULL,
    type_code  text,
    valid_from timestamptz NOT NULL DEFAULT now(),
    valid_to   timestamptz,
    PRIMARY KEY (source_patient_id, system, value)
);
CREATE INDEX patient_identifier_lookup ON edw.patient_identifier (system, value) WHERE valid_to IS NULL;
COMMENT ON INDEX edw.patient_identifier_lookup IS 'exact matching on shared identifiers (system+value)';

CREATE TABLE edw.patient_name (
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    use        text NOT NULL DEFAULT '',
    family     text NOT NULL DEFAULT '',
    given      text NOT NULL DEFAULT '',   -- given names joined by a space
    valid_from timestamptz NOT NULL DEFAULT now(),
    valid_to   timestamptz,
    PRIMARY KEY (source_patient_id, use, family, given)
);

CREATE TABLE edw.patient_address (
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    line        text NOT NULL DEFAULT '',
    city        text NOT NULL DEFAULT '',
    state       text NOT NULL DEFAULT '',
    postal_code text NOT NULL DEFAULT '',
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    PRIMARY KEY (source_patient_id, line, city, state, postal_code)
);

CREATE TABLE edw.patient_telecom (
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    system     text NOT NULL DEFAULT '',
    value      text NOT NULL,
    valid_from timestamptz NOT NULL DEFAULT now(),
    valid_to   timestamptz,
    PRIMARY KEY (source_patient_id, system, value)
);

-- Record linkage results.
CREATE TABLE edw.match_link (
    a_id    bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    b_id    bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    method  text   NOT NULL CHECK (method IN ('identifier', 'probabilistic', 'manual')),
    score   double precision,
    PRIMARY KEY (a_id, b_id),
    CHECK (a_id < b_id)
);
CREATE TABLE edw.match_review (
    a_id    bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    b_id    bigint NOT NULL REFERENCES edw.source_patient (id) ON DELETE CASCADE,
    score   double precision NOT NULL,
    status  text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'linked', 'rejected')),
    PRIMARY KEY (a_id, b_id),
    CHECK (a_id < b_id)
);

CREATE TABLE edw.coverage (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL,
    source_id         text NOT NULL,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    status            text,
    type_code         text,
    payor             text,
    period_start      timestamptz,
    period_end        timestamptz,
    content_hash      text NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint REFERENCES staging.load_batch (id),
    line_no           bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX coverage_patient ON edw.coverage (source_patient_id);
COMMENT ON INDEX edw.coverage_patient IS 'per-patient reads (FHIR API, measures)';

---------------------------------------------------------------- clinical
CREATE TABLE edw.encounter (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL,
    source_id         text NOT NULL,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    status            text NOT NULL,
    class_code        text,
    type_system       text,
    type_code         text,
    type_display      text,
    period_start      timestamptz,
    period_end        timestamptz,
    practitioner_ref  text,          -- as sent (id part); resolved below when known
    practitioner_id   bigint REFERENCES edw.practitioner (id),
    organization_id   bigint REFERENCES edw.organization (id),
    content_hash      text NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint REFERENCES staging.load_batch (id),
    line_no           bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX encounter_patient ON edw.encounter (source_patient_id, period_start);
COMMENT ON INDEX edw.encounter_patient IS 'per-patient timeline; attribution look-back window';
CREATE INDEX encounter_change ON edw.encounter (change_no);
COMMENT ON INDEX edw.encounter_change IS 'incremental star ETL reads rows above the watermark';

CREATE TABLE edw.condition (
    id                  bigserial PRIMARY KEY,
    source              text NOT NULL,
    source_id           text NOT NULL,
    source_patient_id   bigint NOT NULL REFERENCES edw.source_patient (id),
    encounter_ref       text,
    clinical_status     text,
    verification_status text,
    category            text,
    code_system         text NOT NULL,
    code                text NOT NULL,
    display             text,
    onset               timestamptz,
    abatement           timestamptz,
    recorded_date       timestamptz,
    content_hash        text NOT NULL,
    change_no           bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id            bigint REFERENCES staging.load_batch (id),
    line_no             bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX condition_patient ON edw.condition (source_patient_id);
COMMENT ON INDEX edw.condition_patient IS 'per-patient reads (FHIR API, measures)';
CREATE INDEX condition_code ON edw.condition (code_system, code);
COMMENT ON INDEX edw.condition_code IS 'cohort queries by diagnosis code / value set';

CREATE TABLE edw.observation (
    id                 bigserial PRIMARY KEY,
    source             text NOT NULL,
    source_id          text NOT NULL,
    source_patient_id  bigint NOT NULL REFERENCES edw.source_patient (id),
    encounter_ref      text,
    status             text NOT NULL,
    category           text,
    code_system        text NOT NULL,
    code               text NOT NULL,
    display            text,
    effective          timestamptz,
    value_num          numeric,
    value_unit         text,
    value_code_system  text,
    value_code         text,
    value_string       text,
    ref_low            numeric,
    ref_high           numeric,
    interpretation     text,
    content_hash       text NOT NULL,
    change_no          bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id           bigint REFERENCES staging.load_batch (id),
    line_no            bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX observation_patient ON edw.observation (source_patient_id, effective);
COMMENT ON INDEX edw.observation_patient IS 'per-patient latest-value lookups (e.g. last HbA1c)';
CREATE INDEX observation_code ON edw.observation (code_system, code, effective);
COMMENT ON INDEX edw.observation_code IS 'population queries by LOINC code over time';
CREATE INDEX observation_change ON edw.observation (change_no);
COMMENT ON INDEX edw.observation_change IS 'incremental star ETL reads rows above the watermark';

CREATE TABLE edw.procedure (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL,
    source_id         text NOT NULL,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    encounter_ref     text,
    status            text NOT NULL,
    code_system       text NOT NULL,
    code              text NOT NULL,
    display           text,
    performed_start   timestamptz,
    performed_end     timestamptz,
    content_hash      text NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint REFERENCES staging.load_batch (id),
    line_no           bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX procedure_patient ON edw.procedure (source_patient_id);
COMMENT ON INDEX edw.procedure_patient IS 'per-patient reads (FHIR API, measures)';

CREATE TABLE edw.medication_request (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL,
    source_id         text NOT NULL,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    status            text NOT NULL,
    intent            text NOT NULL,
    code_system       text,
    code              text,
    display           text,
    authored_on       timestamptz,
    content_hash      text NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint REFERENCES staging.load_batch (id),
    line_no           bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX medication_request_patient ON edw.medication_request (source_patient_id);
COMMENT ON INDEX edw.medication_request_patient IS 'per-patient reads (FHIR API, measures)';

CREATE TABLE edw.immunization (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL,
    source_id         text NOT NULL,
    source_patient_id bigint NOT NULL REFERENCES edw.source_patient (id),
    status            text NOT NULL,
    code_system       text NOT NULL,
    code              text NOT NULL,
    display           text,
    occurrence        timestamptz,
    content_hash      text NOT NULL,
    change_no         bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    batch_id          bigint REFERENCES staging.load_batch (id),
    line_no           bigint,
    UNIQUE (source, source_id)
);
CREATE INDEX immunization_patient ON edw.immunization (source_patient_id);
COMMENT ON INDEX edw.immunization_patient IS 'per-patient reads (FHIR API, measures)';

---------------------------------------------------------------- derived / operational
CREATE TABLE edw.attribution (
    id              bigserial PRIMARY KEY,
    person_id       bigint NOT NULL REFERENCES edw.person (id),
    practitioner_id bigint NOT NULL REFERENCES edw.practitioner (id),
    care_team_id    bigint REFERENCES edw.care_team (id),
    period_start    date NOT NULL,
    period_end      date NOT NULL,
    method          text NOT NULL,   -- e.g. 'plurality-pcp-24m'
    visit_count     integer NOT NULL,
    last_visit      timestamptz,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, method, period_end)
);
CREATE INDEX attribution_practitioner ON edw.attribution (practitioner_id, period_end);
COMMENT ON INDEX edw.attribution_practitioner IS 'panel lists: practitioner -> attributed persons';

-- FHIR Group per provider and per care team (membership from attribution).
CREATE TABLE edw.patient_group (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('practitioner', 'care_team')),
    ref_id    bigint NOT NULL,
    name      text,
    UNIQUE (kind, ref_id)
);
CREATE TABLE edw.patient_group_member (
    group_id  bigint NOT NULL REFERENCES edw.patient_group (id) ON DELETE CASCADE,
    person_id bigint NOT NULL REFERENCES edw.person (id),
    PRIMARY KEY (group_id, person_id)
);

CREATE TABLE edw.measure_result (
    id           bigserial PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES edw.person (id),
    measure_id   text NOT NULL,
    period_start date NOT NULL,
    period_end   date NOT NULL,
    population   text NOT NULL,   -- initial-population, denominator, numerator, ...
    count        integer NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    change_no    bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    UNIQUE (measure_id, period_start, person_id, population)
);

CREATE TABLE edw.care_gap (
    id          bigserial PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES edw.person (id),
    measure_id  text NOT NULL,
    period_start date NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'closed')),
    detected_at timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    change_no   bigint NOT NULL DEFAULT nextval('edw.change_seq'),
    UNIQUE (measure_id, period_start, person_id)
);
CREATE INDEX care_gap_open ON edw.care_gap (person_id) WHERE status = 'open';
COMMENT ON INDEX edw.care_gap_open IS 'worklists show open gaps per person';

-- Actions written back from workstations (idempotent per workstation event id).
CREATE TABLE edw.worklist_action (
    id             bigserial PRIMARY KEY,
    workstation_id text NOT NULL,
    event_id       text NOT NULL,
    person_id      bigint REFERENCES edw.person (id),
    care_gap_id    bigint REFERENCES edw.care_gap (id),
    action         text NOT NULL,
    note           text,
    acted_at       timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workstation_id, event_id)
);

-- Lines that failed validation: nothing is silently dropped.
CREATE TABLE edw.quarantine (
    id            bigserial PRIMARY KEY,
    batch_id      bigint NOT NULL REFERENCES staging.load_batch (id),
    line_no       bigint NOT NULL,
    source        text NOT NULL,
    file_name     text NOT NULL,
    resource_type text,
    resource_id   text,
    reason        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_id, line_no)
);
COMMENT ON CONSTRAINT quarantine_batch_id_line_no_key ON edw.quarantine IS
    'a line is quarantined at most once, so a re-run merge cannot duplicate it';

-- Total helpers for JSON extraction in the merge (never raise on unexpected shapes).
CREATE FUNCTION edw.jarr(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN v ELSE '[]'::jsonb END
$$;
CREATE FUNCTION edw.jbool(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN (v #>> '{}')::boolean END
$$;
CREATE FUNCTION edw.jnum(v jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::numeric END
$$;
-- Strings of a JSON array joined by a space ('' when absent).
CREATE FUNCTION edw.jjoin(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(e, ' '), '') FROM jsonb_array_elements_text(edw.jarr(v)) e
$$;

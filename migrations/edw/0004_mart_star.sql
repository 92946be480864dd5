-- 0004: the analytics star schema (mart). Loaded by `phm-edw etl` from edw.*,
-- incrementally (mart.etl_watermark holds the last edw.change_seq value read per table).

CREATE TABLE mart.etl_watermark (
    table_name text PRIMARY KEY,
    last_change_no bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mart.dim_date (
    date_key   integer PRIMARY KEY,      -- yyyymmdd
    date       date NOT NULL UNIQUE,
    year       smallint NOT NULL,
    quarter    smallint NOT NULL,
    month      smallint NOT NULL,
    day        smallint NOT NULL,
    iso_dow    smallint NOT NULL
);
INSERT INTO mart.dim_date
SELECT to_char(d, 'YYYYMMDD')::int, d, extract(year FROM d), extract(quarter FROM d),
       extract(month FROM d), extract(day FROM d), extract(isodow FROM d)
FROM generate_series(date '1900-01-01', date '2060-12-31', interval '1 day') AS g(d);

-- SCD type 2: a new version when tracked attributes change (e.g. a moved address).
CREATE TABLE mart.dim_patient (
    patient_key bigserial PRIMARY KEY,
    person_id   bigint NOT NULL,
    version     integer NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,            -- NULL = current
    is_current  boolean NOT NULL,
    birth_date  date,
    birth_year  smallint,
    sex         text,
    family      text,
    given       text,
    city        text,
    state       text,
    postal_code text,
    row_hash    text NOT NULL,
    UNIQUE (person_id, version)
);
CREATE UNIQUE INDEX dim_patient_current ON mart.dim_patient (person_id) WHERE is_current;
COMMENT ON INDEX mart.dim_patient_current IS 'one current version per person; fact loads look it up';

CREATE TABLE mart.dim_provider (
    provider_key    bigserial PRIMARY KEY,
    practitioner_id bigint NOT NULL UNIQUE,
    npi             text,
    name            text,
    specialty       text
);
CREATE TABLE mart.dim_organization (
    org_key         bigserial PRIMARY KEY,
    organization_id bigint NOT NULL UNIQUE,
    name            text,
    npi             text
);
CREATE TABLE mart.dim_measure (
    measure_key bigserial PRIMARY KEY,
    measure_id  text NOT NULL UNIQUE,
    name        text
);
CREATE TABLE mart.dim_code (
    code_key bigserial PRIMARY KEY,
    system   text NOT NULL,
    code     text NOT NULL,
    display  text,
    UNIQUE (system, code)
);

CREATE TABLE mart.fact_encounter (
    encounter_id  bigint PRIMARY KEY,    -- edw.encounter.id (degenerate dimension)
    patient_key   bigint NOT NULL REFERENCES mart.dim_patient (patient_key),
    provider_key  bigint REFERENCES mart.dim_provider (provider_key),
    org_key       bigint REFERENCES mart.dim_organization (org_key),
    date_key      integer REFERENCES mart.dim_date (date_key),
    code_key      bigint REFERENCES mart.dim_code (code_key),
    class_code    text,
    status        text,
    length_hours  numeric
);
CREATE INDEX fact_encounter_date ON mart.fact_encounter (date_key);
COMMENT ON INDEX mart.fact_encounter_date IS 'utilisation by month/quarter';
CREATE INDEX fact_encounter_patient ON mart.fact_encounter (patient_key);
COMMENT ON INDEX mart.fact_encounter_patient IS 'per-patient drill-down and SCD2 re-keying';

CREATE TABLE mart.fact_observation (
    observation_id bigint PRIMARY KEY,
    patient_key    bigint NOT NULL REFERENCES mart.dim_patient (patient_key),
    date_key       integer REFERENCES mart.dim_date (date_key),
    code_key       bigint NOT NULL REFERENCES mart.dim_code (code_key),
    value_num      numeric,
    value_unit     text,
    interpretation text
);
CREATE INDEX fact_observation_code_date ON mart.fact_observation (code_key, date_key);
COMMENT ON INDEX mart.fact_observation_code_date IS 'trend of one lab/vital over time';

CREATE TABLE mart.fact_measure_result (
    measure_result_id bigint PRIMARY KEY,
    patient_key  bigint NOT NULL REFERENCES mart.dim_patient (patient_key),
    measure_key  bigint NOT NULL REFERENCES mart.dim_measure (measure_key),
    period_year  smallint NOT NULL,
    population   text NOT NULL,
    count        integer NOT NULL
);
CREATE TABLE mart.fact_care_gap (
    care_gap_id  bigint PRIMARY KEY,
    patient_key  bigint NOT NULL REFERENCES mart.dim_patient (patient_key),
    measure_key  bigint NOT NULL REFERENCES mart.dim_measure (measure_key),
    date_key     integer REFERENCES mart.dim_date (date_key),
    status       text NOT NULL
);

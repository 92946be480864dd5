//! Merge of the reference and demographic types (organisations, practitioners, care
//! teams, patients, groups) from temp table `mi` (one jsonb body per valid line;
//! patients from the temp tables `patient.rs` fills).
//! These are a few percent of the lines and fan out into several tables each, so
//! PostgreSQL extracts them from the JSON; the clinical types go the typed way
//! (`typed.rs`).

/// SQL parameters: $1 source, $2 batch id. Rows come from temp table `mi` with reason IS NULL.
/// The small tables a statement looks up are read in a CTE of their own: on Citus they are
/// reference tables, and a direct join of one with the session's temp tables is not planned
/// correctly (tried: a LEFT JOIN from `mi` to one inserted no rows, silently).
/// An upsert's change number is the proposed row's (its column default, taken on the
/// coordinator): Citus refuses nextval() in an update of a distributed or reference table.
pub(super) struct JsonSpec {
    pub rtype: &'static str,
    /// Required references checked before the merge: (element, table).
    pub required_refs: &'static [(&'static str, &'static str)],
    pub sql: &'static [Step],
    /// The statements on the distributed (Citus) warehouse, where they differ: the patient
    /// is found in `edw.patient_key` and every row about one carries its person.
    pub distributed: Option<fn() -> Vec<Step>>,
}

pub(super) enum Step {
    Sql(&'static str),
    Owned(String),
    /// `ids` (a query of the chunk's temp tables) gives the ids `sql` changes, as $1: Citus
    /// modifies a reference table only without a join to the session's temp tables.
    ById {
        ids: &'static str,
        sql: &'static str,
    },
}

pub(super) static SPECS: &[JsonSpec] = &[
    JsonSpec {
        rtype: "Organization",
        required_refs: &[],
        sql: &[
            Step::Sql("INSERT INTO edw.organization AS t (source, source_id, name, npi, type_code, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name',
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'type'->0->'coding'->0->>'code', edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Organization'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, npi = EXCLUDED.npi,
              type_code = EXCLUDED.type_code, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
            WHERE t.content_hash <> EXCLUDED.content_hash"),
        ],
        distributed: None,
    },
    JsonSpec {
        rtype: "Practitioner",
        required_refs: &[],
        sql: &[
            Step::Sql("INSERT INTO edw.practitioner AS t (source, source_id, npi, family, given, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid,
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'name'->0->>'family', nullif(edw.jjoin(b->'name'->0->'given'), ''),
              edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner'
            ON CONFLICT (source, source_id) DO UPDATE SET npi = EXCLUDED.npi, family = EXCLUDED.family,
              given = EXCLUDED.given, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
            WHERE t.content_hash <> EXCLUDED.content_hash"),
            Step::Sql("WITH p AS MATERIALIZED (SELECT id, source_id FROM edw.practitioner WHERE source = $1)
            INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN p ON p.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'qualification')) q,
                 jsonb_array_elements(edw.jarr(q->'code'->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING"),
        ],
        distributed: None,
    },
    JsonSpec {
        rtype: "PractitionerRole",
        required_refs: &[("practitioner", "practitioner")],
        sql: &[
            Step::Sql("WITH p AS MATERIALIZED (SELECT id, source_id FROM edw.practitioner WHERE source = $1)
            INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN p ON p.source_id = edw.ref_id(mi.b->'practitioner'->>'reference'),
                 jsonb_array_elements(edw.jarr(mi.b->'specialty')) s,
                 jsonb_array_elements(edw.jarr(s->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'PractitionerRole' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING"),
        ],
        distributed: None,
    },
    JsonSpec {
        rtype: "CareTeam",
        required_refs: &[],
        sql: &[
            Step::Sql("WITH o AS MATERIALIZED (SELECT id, source_id FROM edw.organization WHERE source = $1)
            INSERT INTO edw.care_team AS t (source, source_id, name, organization_id, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', o.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN o ON o.source_id = edw.ref_id(mi.b->'managingOrganization'->0->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name,
              organization_id = EXCLUDED.organization_id, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
            WHERE t.content_hash <> EXCLUDED.content_hash"),
            Step::ById {
                ids: "WITH ct AS MATERIALIZED (SELECT id, source_id FROM edw.care_team WHERE source = $1)
                      SELECT ct.id FROM mi JOIN ct ON ct.source_id = mi.rid
                      WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'",
                sql: "DELETE FROM edw.care_team_member WHERE care_team_id = ANY ($1)",
            },
            Step::Sql("WITH ct AS MATERIALIZED (SELECT id, source_id FROM edw.care_team WHERE source = $1),
              p AS MATERIALIZED (SELECT id, source_id FROM edw.practitioner WHERE source = $1)
            INSERT INTO edw.care_team_member (care_team_id, practitioner_id, role_code)
            SELECT DISTINCT ct.id, p.id, coalesce(part->'role'->0->'coding'->0->>'code', '')
            FROM mi JOIN ct ON ct.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'participant')) part
                 JOIN p ON p.source_id = edw.ref_id(part->'member'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
              AND part->'member'->>'reference' LIKE 'Practitioner/%'
            ON CONFLICT DO NOTHING"),
        ],
        distributed: None,
    },
    // Patients come extracted (`patient.rs`): temp tables mt_patient (one row per valid
    // line) and mt_patient_<history> keyed by its line_no.
    JsonSpec {
        rtype: "Patient",
        required_refs: &[],
        sql: &[
            Step::Sql("INSERT INTO edw.source_patient AS t (source, source_id, org_id, birth_date, sex, deceased, active, content_hash, batch_id, line_no)
            SELECT $1, pt.rid, o.id, pt.birth_date, pt.sex, pt.deceased, pt.active, pt.hash, $2, pt.line_no
            FROM mt_patient pt LEFT JOIN edw.organization o ON o.source = $1 AND o.source_id = pt.org
            ON CONFLICT (source, source_id) DO UPDATE SET org_id = EXCLUDED.org_id,
              birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, deceased = EXCLUDED.deceased,
              active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
            WHERE t.content_hash <> EXCLUDED.content_hash"),
            // Demographic history: close values no longer sent, (re)open the ones sent.
            // The chunk's patients are found by index probes (scalar subquery, = ANY of
            // an array): as joins they were planned as scans of every patient and
            // history row per chunk, and a 100,000-patient file took 6 s into an empty
            // EDW but 18 s once it held 800,000 patients.
            Step::Sql("WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT ON (p.id, x.sys, x.val) p.id, x.sys, x.val, x.tc
                   FROM p JOIN mt_patient_identifier x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_identifier h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_identifier (source_patient_id, system, value, type_code)
             SELECT id, sys, val, tc FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_identifier.valid_to IS NOT NULL"),
            Step::Sql("WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT p.id, x.use, x.family, x.given
                   FROM p JOIN mt_patient_name x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_name h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.use = h.use
                                     AND n.family = h.family AND n.given = h.given))
             INSERT INTO edw.patient_name (source_patient_id, use, family, given)
             SELECT id, use, family, given FROM n
             ON CONFLICT (source_patient_id, use, family, given) DO UPDATE SET valid_to = NULL
             WHERE patient_name.valid_to IS NOT NULL"),
            Step::Sql("WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT p.id, x.line, x.city, x.state, x.postal
                   FROM p JOIN mt_patient_address x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_address h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.line = h.line
                                     AND n.city = h.city AND n.state = h.state AND n.postal = h.postal_code))
             INSERT INTO edw.patient_address (source_patient_id, line, city, state, postal_code)
             SELECT id, line, city, state, postal FROM n
             ON CONFLICT (source_patient_id, line, city, state, postal_code) DO UPDATE SET valid_to = NULL
             WHERE patient_address.valid_to IS NOT NULL"),
            Step::Sql("WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT p.id, x.sys, x.val
                   FROM p JOIN mt_patient_telecom x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_telecom h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_telecom (source_patient_id, system, value)
             SELECT id, sys, val FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_telecom.valid_to IS NOT NULL"),
        ],
        distributed: Some(patient_distributed),
    },
    JsonSpec {
        rtype: "Group",
        required_refs: &[],
        sql: &[
            Step::Sql("UPDATE mi SET reason = 'unresolved reference member.entity: no such Patient from this source'
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND EXISTS (
              SELECT 1 FROM mt_group_member m
              WHERE m.line_no = mi.line_no AND NOT EXISTS (
                SELECT 1 FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = m.pid))"),
            Step::Sql(GROUP_UPSERT),
            Step::Sql(GROUP_MEMBERS_RESET),
            Step::Sql("WITH g AS MATERIALIZED (SELECT id, source_id FROM edw.source_group WHERE source = $1)
            INSERT INTO edw.source_group_member (group_id, source_patient_id)
            SELECT DISTINCT g.id, sp.id
            FROM mi JOIN g ON g.source_id = mi.rid
                 JOIN mt_group_member m ON m.line_no = mi.line_no
                 JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = m.pid
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT DO NOTHING"),
        ],
        distributed: Some(group_distributed),
    },
];

const GROUP_UPSERT: &str = "WITH pr AS MATERIALIZED (SELECT id, source_id FROM edw.practitioner WHERE source = $1)
            INSERT INTO edw.source_group AS t (source, source_id, name, type, managing_ref, practitioner_id,
              content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', b->>'type', b->'managingEntity'->>'reference', pr.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN pr ON b->'managingEntity'->>'reference' LIKE 'Practitioner/%'
                 AND pr.source_id = edw.ref_id(b->'managingEntity'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
              managing_ref = EXCLUDED.managing_ref, practitioner_id = EXCLUDED.practitioner_id,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = EXCLUDED.change_no
            WHERE t.content_hash <> EXCLUDED.content_hash";

const GROUP_MEMBERS_RESET: &str =
    "WITH g AS MATERIALIZED (SELECT id, source_id FROM edw.source_group WHERE source = $1)
            DELETE FROM edw.source_group_member m USING mi, g
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND g.source_id = mi.rid
              AND m.group_id = g.id";

/// The history tables of a patient record: (table, temp table, the temp table's columns,
/// the table's columns they go to).
const PATIENT_HISTORY: [(&str, &str, &str, &str); 4] = [
    (
        "patient_identifier",
        "mt_patient_identifier",
        "sys, val, tc",
        "system, value, type_code",
    ),
    (
        "patient_name",
        "mt_patient_name",
        "use, family, given",
        "use, family, given",
    ),
    (
        "patient_address",
        "mt_patient_address",
        "line, city, state, postal",
        "line, city, state, postal_code",
    ),
    (
        "patient_telecom",
        "mt_patient_telecom",
        "sys, val",
        "system, value",
    ),
];

/// Patients on the distributed warehouse. A reference table is read in a CTE of its own:
/// Citus plans no direct join of one with the session's temp tables. A record new to the warehouse gets its key on the
/// coordinator and a person of its own (the shard key must be known when the row is written;
/// `phm-edw match` merges persons later by moving rows). A record whose organisation changed
/// has it copied onto its rows and its person's (row-level security).
fn patient_distributed() -> Vec<Step> {
    let mut steps = vec![
        // The organisations first, into a temp table (Citus modifies a local table only
        // without a reference table in the same statement).
        Step::Sql(
            "WITH o AS MATERIALIZED (SELECT id, source_id FROM edw.organization WHERE source = $1)
             INSERT INTO mt_patient_org (rid, org_id)
             SELECT pt.rid, o.id FROM mt_patient pt LEFT JOIN o ON o.source_id = pt.org",
        ),
        Step::Sql(
            "WITH k AS (
               INSERT INTO edw.patient_key (source, source_id, source_patient_id, person_id, org_id)
               SELECT $1, pt.rid, nextval('edw.source_patient_id_seq'), nextval('edw.person_id_seq'), pt.org_id
               FROM mt_patient_org pt
               WHERE NOT EXISTS (SELECT 1 FROM edw.patient_key x WHERE x.source = $1 AND x.source_id = pt.rid)
               ON CONFLICT (source, source_id) DO NOTHING
               RETURNING person_id, org_id)
             INSERT INTO edw.person (id, org_ids) SELECT person_id, array_remove(ARRAY[org_id], NULL) FROM k",
        ),
        Step::Sql(
            "WITH moved AS (
               UPDATE edw.patient_key k SET org_id = pt.org_id FROM mt_patient_org pt
               WHERE k.source = $1 AND k.source_id = pt.rid AND k.org_id IS DISTINCT FROM pt.org_id
               RETURNING k.source_patient_id, k.person_id)
             SELECT edw.copy_orgs(array_agg(source_patient_id), array_agg(person_id)) FROM moved HAVING count(*) > 0",
        ),
        Step::Sql(
            "INSERT INTO edw.source_patient AS t (id, source, source_id, person_id, org_id, birth_date, sex, deceased,
               active, content_hash, batch_id, line_no)
             SELECT k.source_patient_id, $1, pt.rid, k.person_id, k.org_id, pt.birth_date, pt.sex, pt.deceased,
               pt.active, pt.hash, $2, pt.line_no
             FROM mt_patient pt JOIN edw.patient_key k ON k.source = $1 AND k.source_id = pt.rid
             ON CONFLICT (source, source_id, person_id) DO UPDATE SET org_id = EXCLUDED.org_id,
               birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, deceased = EXCLUDED.deceased,
               active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
               batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
             WHERE t.content_hash <> EXCLUDED.content_hash",
        ),
    ];
    for (table, temp, from, to) in PATIENT_HISTORY {
        // The key columns: all but the identifier's type.
        let key: Vec<(&str, &str)> = from
            .split(", ")
            .zip(to.split(", "))
            .filter(|(_, t)| *t != "type_code")
            .collect();
        let matches: String = key
            .iter()
            .map(|(f, t)| format!(" AND n.{f} = h.{t}"))
            .collect();
        let distinct = key.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ");
        steps.push(Step::Owned(format!(
            "WITH p AS (SELECT k.source_patient_id AS id, k.person_id, k.org_id, pt.line_no
                        FROM mt_patient pt JOIN edw.patient_key k ON k.source = $1 AND k.source_id = pt.rid),
             n AS (SELECT DISTINCT ON (p.id, {distinct}) p.id, p.person_id, p.org_id, {from}
                   FROM p JOIN {temp} x ON x.line_no = p.line_no),
             c AS (UPDATE edw.{table} h SET valid_to = now()
                   WHERE h.person_id = ANY (ARRAY(SELECT person_id FROM p))
                     AND h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id{matches}))
             INSERT INTO edw.{table} (source_patient_id, person_id, org_id, {to})
             SELECT id, person_id, org_id, {from} FROM n
             ON CONFLICT ON CONSTRAINT {table}_pkey DO UPDATE SET valid_to = NULL
             WHERE {table}.valid_to IS NOT NULL"
        )));
    }
    steps
}

/// Groups on the distributed warehouse: members are found in `edw.patient_key` and carry
/// their person.
fn group_distributed() -> Vec<Step> {
    vec![
        Step::Sql(
            "UPDATE mi SET reason = 'unresolved reference member.entity: no such Patient from this source'
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND EXISTS (
              SELECT 1 FROM mt_group_member m
              WHERE m.line_no = mi.line_no AND NOT EXISTS (
                SELECT 1 FROM edw.patient_key k WHERE k.source = $1 AND k.source_id = m.pid))",
        ),
        Step::Sql(GROUP_UPSERT),
        Step::Sql(GROUP_MEMBERS_RESET),
        Step::Sql(
            "WITH g AS MATERIALIZED (SELECT id, source_id FROM edw.source_group WHERE source = $1)
            INSERT INTO edw.source_group_member (group_id, source_patient_id, person_id, org_id)
            SELECT DISTINCT g.id, k.source_patient_id, k.person_id, k.org_id
            FROM mi JOIN g ON g.source_id = mi.rid
                 JOIN mt_group_member m ON m.line_no = mi.line_no
                 JOIN edw.patient_key k ON k.source = $1 AND k.source_id = m.pid
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT DO NOTHING",
        ),
    ]
}

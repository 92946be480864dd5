//! Merge of the reference and demographic types (organisations, practitioners, care
//! teams, patients, groups) from temp table `mi` (one jsonb body per valid line;
//! patients from the temp tables `patient.rs` fills).
//! These are a few percent of the lines and fan out into several tables each, so
//! PostgreSQL extracts them from the JSON; the clinical types go the typed way
//! (`typed.rs`).

/// SQL parameters: $1 source, $2 batch id. Rows come from temp table `mi` with reason IS NULL.
pub(super) struct JsonSpec {
    pub rtype: &'static str,
    /// Required references checked before the merge: (element, table).
    pub required_refs: &'static [(&'static str, &'static str)],
    pub sql: &'static [&'static str],
}

pub(super) static SPECS: &[JsonSpec] = &[
    JsonSpec {
        rtype: "Organization",
        required_refs: &[],
        sql: &["INSERT INTO edw.organization AS t (source, source_id, name, npi, type_code, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name',
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'type'->0->'coding'->0->>'code', edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Organization'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, npi = EXCLUDED.npi,
              type_code = EXCLUDED.type_code, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    JsonSpec {
        rtype: "Practitioner",
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.practitioner AS t (source, source_id, npi, family, given, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid,
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'name'->0->>'family', nullif(edw.jjoin(b->'name'->0->'given'), ''),
              edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner'
            ON CONFLICT (source, source_id) DO UPDATE SET npi = EXCLUDED.npi, family = EXCLUDED.family,
              given = EXCLUDED.given, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN edw.practitioner p ON p.source = $1 AND p.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'qualification')) q,
                 jsonb_array_elements(edw.jarr(q->'code'->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING",
        ],
    },
    JsonSpec {
        rtype: "PractitionerRole",
        required_refs: &[("practitioner", "practitioner")],
        sql: &["INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN edw.practitioner p ON p.source = $1 AND p.source_id = edw.ref_id(mi.b->'practitioner'->>'reference'),
                 jsonb_array_elements(edw.jarr(mi.b->'specialty')) s,
                 jsonb_array_elements(edw.jarr(s->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'PractitionerRole' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING"],
    },
    JsonSpec {
        rtype: "CareTeam",
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.care_team AS t (source, source_id, name, organization_id, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', o.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN edw.organization o ON o.source = $1
                 AND o.source_id = edw.ref_id(mi.b->'managingOrganization'->0->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name,
              organization_id = EXCLUDED.organization_id, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "DELETE FROM edw.care_team_member m USING mi, edw.care_team ct
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam' AND ct.source = $1 AND ct.source_id = mi.rid
              AND m.care_team_id = ct.id",
            "INSERT INTO edw.care_team_member (care_team_id, practitioner_id, role_code)
            SELECT DISTINCT ct.id, p.id, coalesce(part->'role'->0->'coding'->0->>'code', '')
            FROM mi JOIN edw.care_team ct ON ct.source = $1 AND ct.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'participant')) part
                 JOIN edw.practitioner p ON p.source = $1
                   AND p.source_id = edw.ref_id(part->'member'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
              AND part->'member'->>'reference' LIKE 'Practitioner/%'
            ON CONFLICT DO NOTHING",
        ],
    },
    // Patients come extracted (`patient.rs`): temp tables mt_patient (one row per valid
    // line) and mt_patient_<history> keyed by its line_no.
    JsonSpec {
        rtype: "Patient",
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.source_patient AS t (source, source_id, org_id, birth_date, sex, deceased, active, content_hash, batch_id, line_no)
            SELECT $1, pt.rid, o.id, pt.birth_date, pt.sex, pt.deceased, pt.active, pt.hash, $2, pt.line_no
            FROM mt_patient pt LEFT JOIN edw.organization o ON o.source = $1 AND o.source_id = pt.org
            ON CONFLICT (source, source_id) DO UPDATE SET org_id = EXCLUDED.org_id,
              birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, deceased = EXCLUDED.deceased,
              active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            // Demographic history: close values no longer sent, (re)open the ones sent.
            // The chunk's patients are found by index probes (scalar subquery, = ANY of
            // an array): as joins they were planned as scans of every patient and
            // history row per chunk, and a 100,000-patient file took 6 s into an empty
            // EDW but 18 s once it held 800,000 patients.
            "WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT ON (p.id, x.sys, x.val) p.id, x.sys, x.val, x.tc
                   FROM p JOIN mt_patient_identifier x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_identifier h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_identifier (source_patient_id, system, value, type_code)
             SELECT id, sys, val, tc FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_identifier.valid_to IS NOT NULL",
            "WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
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
             WHERE patient_name.valid_to IS NOT NULL",
            "WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
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
             WHERE patient_address.valid_to IS NOT NULL",
            "WITH p AS (SELECT (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = pt.rid) AS id,
                              pt.line_no FROM mt_patient pt),
             n AS (SELECT DISTINCT p.id, x.sys, x.val
                   FROM p JOIN mt_patient_telecom x ON x.line_no = p.line_no),
             c AS (UPDATE edw.patient_telecom h SET valid_to = now()
                   WHERE h.source_patient_id = ANY (ARRAY(SELECT id FROM p)) AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_telecom (source_patient_id, system, value)
             SELECT id, sys, val FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_telecom.valid_to IS NOT NULL",
        ],
    },
    JsonSpec {
        rtype: "Group",
        required_refs: &[],
        sql: &[
            "UPDATE mi SET reason = 'unresolved reference member.entity: no such Patient from this source'
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND EXISTS (
              SELECT 1 FROM mt_group_member m
              WHERE m.line_no = mi.line_no AND NOT EXISTS (
                SELECT 1 FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = m.pid))",
            "INSERT INTO edw.source_group AS t (source, source_id, name, type, managing_ref, practitioner_id,
              content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', b->>'type', b->'managingEntity'->>'reference', pr.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN edw.practitioner pr ON pr.source = $1
                 AND b->'managingEntity'->>'reference' LIKE 'Practitioner/%'
                 AND pr.source_id = edw.ref_id(b->'managingEntity'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
              managing_ref = EXCLUDED.managing_ref, practitioner_id = EXCLUDED.practitioner_id,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "DELETE FROM edw.source_group_member m USING mi, edw.source_group g
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND g.source = $1 AND g.source_id = mi.rid
              AND m.group_id = g.id",
            "INSERT INTO edw.source_group_member (group_id, source_patient_id)
            SELECT DISTINCT g.id, sp.id
            FROM mi JOIN edw.source_group g ON g.source = $1 AND g.source_id = mi.rid
                 JOIN mt_group_member m ON m.line_no = mi.line_no
                 JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = m.pid
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT DO NOTHING",
        ],
    },
];

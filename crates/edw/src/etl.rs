//! `phm-edw etl`: incremental, idempotent load of the star schema (mart) from edw.
//! Each source table has a watermark (last edw.change_seq value read); one run is one
//! transaction, so a failed run leaves the mart and the watermarks unchanged.
//! dim_patient is SCD type 2: a changed person (e.g. moved address) gets a new version.

use crate::Result;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub patient_versions_added: i64,
    pub providers: i64,
    pub organizations: i64,
    pub encounters: i64,
    pub observations: i64,
    pub measure_results: i64,
    pub care_gaps: i64,
    /// The (a)/(b) summary tables were rebuilt.
    pub summaries_rebuilt: bool,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{{\"patient_versions_added\":{},\"providers\":{},\"organizations\":{},\"fact_encounter\":{},\
             \"fact_observation\":{},\"fact_measure_result\":{},\"fact_care_gap\":{},\"summaries_rebuilt\":{}}}",
            self.patient_versions_added,
            self.providers,
            self.organizations,
            self.encounters,
            self.observations,
            self.measure_results,
            self.care_gaps,
            self.summaries_rebuilt
        )
    }
}

fn wm(tx: &mut postgres::Transaction, t: &str) -> Result<i64> {
    tx.execute(
        "INSERT INTO mart.etl_watermark (table_name) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&t],
    )?;
    Ok(tx
        .query_one(
            "SELECT last_change_no FROM mart.etl_watermark WHERE table_name = $1 FOR UPDATE",
            &[&t],
        )?
        .get(0))
}

/// The watermark becomes the highest change number in `src` (read first: on Citus the
/// watermarks are a table on the coordinator, which an update cannot join to the shards).
fn set_wm(tx: &mut postgres::Transaction, t: &str, src: &str, old: i64) -> Result<()> {
    let highest: i64 = tx
        .query_one(
            &format!("SELECT coalesce(max(change_no), 0) FROM {src}"),
            &[],
        )?
        .get(0);
    tx.execute(
        "UPDATE mart.etl_watermark SET last_change_no = greatest($2::bigint, $3::bigint), updated_at = now()
         WHERE table_name = $1",
        &[&t, &old, &highest],
    )?;
    Ok(())
}

/// What differs on the distributed (Citus) warehouse, where every table about a person is
/// sharded by it: the clinical rows carry their person (no join to the record), a join
/// between tables about persons names the person on both sides (so it runs within a
/// shard), and the facts' keys hold the person.
struct Form {
    distributed: bool,
}

impl Form {
    /// The person of a clinical row `alias` (joined to its record `sp` on one node).
    fn person(&self, alias: &str) -> String {
        if self.distributed {
            format!("{alias}.person_id")
        } else {
            "sp.person_id".into()
        }
    }

    /// The join from a clinical row to its record (one node only).
    fn record_join(&self, alias: &str) -> String {
        if self.distributed {
            String::new()
        } else {
            format!("JOIN edw.source_patient sp ON sp.id = {alias}.source_patient_id")
        }
    }

    /// `AND a.person_id = b.person_id` on Citus: the join stays on one shard.
    fn same_person(&self, a: &str, b: &str) -> String {
        if self.distributed {
            format!(" AND {a}.person_id = {b}.person_id")
        } else {
            String::new()
        }
    }

    /// On Citus, the persons that records left since the last run (`edw.record_move`): a
    /// moved record's facts stay on the old person's shard, which the upsert (keyed by the
    /// person) does not reach. One node re-points them by the fact's own key.
    fn moved_from(&self, tx: &mut postgres::Transaction) -> Result<Vec<i64>> {
        if !self.distributed {
            return Ok(Vec::new());
        }
        let w = wm(tx, "record_move")?;
        Ok(tx
            .query(
                "SELECT DISTINCT from_person FROM edw.record_move WHERE change_no > $1",
                &[&w],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Deletes the facts of `persons` whose clinical row is no longer theirs.
    fn drop_moved_facts(
        &self,
        tx: &mut postgres::Transaction,
        fact: &str,
        key: &str,
        table: &str,
        persons: &[i64],
    ) -> Result<()> {
        if !persons.is_empty() {
            tx.execute(
                &format!(
                    "DELETE FROM mart.{fact} f WHERE f.person_id = ANY($1)
                     AND NOT EXISTS (SELECT 1 FROM edw.{table} x WHERE x.id = f.{key} AND x.person_id = f.person_id)"
                ),
                &[&persons],
            )?;
        }
        Ok(())
    }

    fn moves_read(&self, tx: &mut postgres::Transaction) -> Result<()> {
        if self.distributed {
            set_wm(tx, "record_move", "edw.record_move", 0)?;
        }
        Ok(())
    }

    /// A fact's key (`id` column) and, on Citus, its person column and value.
    fn fact_key(&self, id: &str, person: &str) -> (String, &'static str, String) {
        if self.distributed {
            (
                format!("{id}, person_id"),
                ", person_id",
                format!(", {person}"),
            )
        } else {
            (id.to_string(), "", String::new())
        }
    }
}

pub fn run(c: &mut postgres::Client) -> Result<Report> {
    run_with_progress(c, false)
}

/// As [`run`]; with `progress`, a line per step on stderr (rows and elapsed time).
pub fn run_with_progress(c: &mut postgres::Client, progress: bool) -> Result<Report> {
    let form = Form {
        distributed: crate::migrate::is_distributed(c)?,
    };
    let t0 = std::time::Instant::now();
    let step = |what: &str, rows: i64| {
        if progress {
            eprintln!(
                "etl: {what}: {rows} rows ({:.1}s)",
                t0.elapsed().as_secs_f64()
            );
        }
    };
    let mut tx = c.transaction()?;
    if form.distributed {
        // The run writes reference tables (the small dimensions) after reading and writing
        // distributed ones that have foreign keys to them; Citus allows that in one
        // transaction only over one connection per node.
        tx.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")?;
    }
    tx.execute("SELECT pg_advisory_xact_lock(7419004)", &[])?;
    let mut rep = Report::default();

    // dim_patient (SCD2): persons whose source records changed since the watermark.
    let w = wm(&mut tx, "dim_patient")?;
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS etl_person (
            person_id bigint PRIMARY KEY, birth_date date, sex text, family text, given text,
            city text, state text, postal_code text, row_hash text) ON COMMIT DROP",
    )?;
    tx.execute(
        &format!("INSERT INTO etl_person
         SELECT DISTINCT ON (sp.person_id) sp.person_id, sp.birth_date, sp.sex, n.family, n.given,
                a.city, a.state, a.postal_code, ''
         FROM edw.source_patient sp
         LEFT JOIN LATERAL (SELECT family, given FROM edw.patient_name x WHERE x.source_patient_id = sp.id{}
                            AND x.valid_to IS NULL ORDER BY (x.use = 'official') DESC, family, given LIMIT 1) n ON true
         LEFT JOIN LATERAL (SELECT city, state, postal_code, line FROM edw.patient_address x WHERE x.source_patient_id = sp.id{}
                            AND x.valid_to IS NULL ORDER BY line, postal_code LIMIT 1) a ON true
         WHERE sp.person_id IN (SELECT person_id FROM edw.source_patient WHERE change_no > $1 AND person_id IS NOT NULL)
         ORDER BY sp.person_id, sp.id",
            form.same_person("x", "sp"), form.same_person("x", "sp")),
        &[&w],
    )?;
    tx.execute(
        "UPDATE etl_person SET row_hash = md5(concat_ws('|', birth_date, sex, family, given, city, state, postal_code))",
        &[],
    )?;
    // Temp tables are never auto-analysed: without this the joins below are planned
    // for a guessed size.
    tx.batch_execute("ANALYZE etl_person")?;
    // Close current versions that changed.
    tx.execute(
        "UPDATE mart.dim_patient d SET valid_to = now(), is_current = false
         FROM etl_person e WHERE d.person_id = e.person_id AND d.is_current AND d.row_hash <> e.row_hash",
        &[],
    )?;
    // Existing versions are aggregated once and joined, not looked up per row: on a
    // first load the table's statistics say empty, and per-row subqueries became
    // sequential scans over the rows this statement had already inserted (quadratic:
    // minutes at 500,000 patients).
    // (Materialized: on Citus the versions are read from the shards first, and the new
    // rows built on the coordinator from the session's table.)
    rep.patient_versions_added = tx.execute(
        "WITH v AS MATERIALIZED (
             SELECT d.person_id, max(d.version) AS last_version, bool_or(d.is_current) AS has_current
             FROM mart.dim_patient d WHERE d.person_id IN (SELECT person_id FROM etl_person)
             GROUP BY d.person_id)
         INSERT INTO mart.dim_patient (person_id, version, valid_from, valid_to, is_current, birth_date, birth_year,
                                       sex, family, given, city, state, postal_code, row_hash)
         SELECT e.person_id, coalesce(v.last_version, 0) + 1,
                now(), NULL, true, e.birth_date, extract(year FROM e.birth_date), e.sex, e.family, e.given,
                e.city, e.state, e.postal_code, e.row_hash
         FROM etl_person e
         LEFT JOIN v ON v.person_id = e.person_id
         WHERE NOT coalesce(v.has_current, false)",
        &[],
    )? as i64;
    set_wm(&mut tx, "dim_patient", "edw.source_patient", w)?;
    step("dim_patient", rep.patient_versions_added);

    let w = wm(&mut tx, "dim_provider")?;
    rep.providers = tx.execute(
        // (Materialized, as dim_measure below: on Citus the join inside the INSERT …
        // SELECT planned no task and inserted nothing.)
        "WITH p AS MATERIALIZED (SELECT id, npi, given, family FROM edw.practitioner WHERE change_no > $1),
              s AS MATERIALIZED (SELECT practitioner_id, min(code) AS code FROM edw.practitioner_specialty
                                 GROUP BY 1)
         INSERT INTO mart.dim_provider (practitioner_id, npi, name, specialty)
         SELECT p.id, p.npi, concat_ws(' ', p.given, p.family), s.code
         FROM p LEFT JOIN s ON s.practitioner_id = p.id
         ON CONFLICT (practitioner_id) DO UPDATE SET npi = EXCLUDED.npi, name = EXCLUDED.name,
            specialty = EXCLUDED.specialty",
        &[&w],
    )? as i64;
    set_wm(&mut tx, "dim_provider", "edw.practitioner", w)?;
    step("dim_provider", rep.providers);

    let w = wm(&mut tx, "dim_organization")?;
    rep.organizations = tx.execute(
        "INSERT INTO mart.dim_organization (organization_id, name, npi)
         SELECT o.id, o.name, o.npi FROM edw.organization o WHERE o.change_no > $1
         ON CONFLICT (organization_id) DO UPDATE SET name = EXCLUDED.name, npi = EXCLUDED.npi",
        &[&w],
    )? as i64;
    set_wm(&mut tx, "dim_organization", "edw.organization", w)?;
    step("dim_organization", rep.organizations);

    // Facts: re-pointed to the current patient version when their person changed.
    let w = wm(&mut tx, "fact_encounter")?;
    tx.execute(
        "INSERT INTO mart.dim_code (system, code, display)
         SELECT DISTINCT ON (type_system, type_code) type_system, type_code, type_display FROM edw.encounter
         WHERE change_no > $1 AND type_code IS NOT NULL AND type_system IS NOT NULL
         ON CONFLICT DO NOTHING",
        &[&w],
    )?;
    let wp = wm(&mut tx, "fact_encounter_patients")?;
    let moved_from = form.moved_from(&mut tx)?;
    form.drop_moved_facts(
        &mut tx,
        "fact_encounter",
        "encounter_id",
        "encounter",
        &moved_from,
    )?;
    let (key, person_col, person_val) = form.fact_key("encounter_id", &form.person("e"));
    rep.encounters = tx.execute(
        &format!("INSERT INTO mart.fact_encounter (encounter_id, patient_key, provider_key, org_key, date_key, code_key,
                                          class_code, status, length_hours{person_col})
         SELECT e.id, dp.patient_key, pr.provider_key, o.org_key,
                to_char(e.period_start AT TIME ZONE 'UTC', 'YYYYMMDD')::int, dc.code_key, e.class_code, e.status,
                round((extract(epoch FROM e.period_end - e.period_start) / 3600)::numeric, 2){person_val}
         FROM edw.encounter e
         {record}
         JOIN mart.dim_patient dp ON dp.person_id = {person} AND dp.is_current
         LEFT JOIN mart.dim_provider pr ON pr.practitioner_id = e.practitioner_id
         LEFT JOIN mart.dim_organization o ON o.organization_id = e.organization_id
         LEFT JOIN mart.dim_code dc ON dc.system = e.type_system AND dc.code = e.type_code
         WHERE e.change_no > $1
            OR {person} IN (SELECT person_id FROM edw.source_patient WHERE change_no > $2)
         ON CONFLICT ({key}) DO UPDATE SET patient_key = EXCLUDED.patient_key,
            provider_key = EXCLUDED.provider_key, org_key = EXCLUDED.org_key, date_key = EXCLUDED.date_key,
            code_key = EXCLUDED.code_key, class_code = EXCLUDED.class_code, status = EXCLUDED.status,
            length_hours = EXCLUDED.length_hours",
            record = form.record_join("e"), person = form.person("e")),
        &[&w, &wp],
    )? as i64;
    set_wm(&mut tx, "fact_encounter", "edw.encounter", w)?;
    set_wm(&mut tx, "fact_encounter_patients", "edw.source_patient", 0)?;
    step("fact_encounter", rep.encounters);

    let w = wm(&mut tx, "fact_observation")?;
    tx.execute(
        "INSERT INTO mart.dim_code (system, code, display)
         SELECT DISTINCT ON (code_system, code) code_system, code, display FROM edw.observation
         WHERE change_no > $1 ON CONFLICT DO NOTHING",
        &[&w],
    )?;
    let wp = wm(&mut tx, "fact_observation_patients")?;
    form.drop_moved_facts(
        &mut tx,
        "fact_observation",
        "observation_id",
        "observation",
        &moved_from,
    )?;
    let (key, person_col, person_val) = form.fact_key("observation_id", &form.person("ob"));
    rep.observations = tx.execute(
        &format!("INSERT INTO mart.fact_observation (observation_id, patient_key, date_key, code_key, value_num, value_unit,
                                            interpretation{person_col})
         SELECT ob.id, dp.patient_key, to_char(ob.effective AT TIME ZONE 'UTC', 'YYYYMMDD')::int, dc.code_key,
                ob.value_num, ob.value_unit, ob.interpretation{person_val}
         FROM edw.observation ob
         {record}
         JOIN mart.dim_patient dp ON dp.person_id = {person} AND dp.is_current
         JOIN mart.dim_code dc ON dc.system = ob.code_system AND dc.code = ob.code
         WHERE ob.change_no > $1
            OR {person} IN (SELECT person_id FROM edw.source_patient WHERE change_no > $2)
         ON CONFLICT ({key}) DO UPDATE SET patient_key = EXCLUDED.patient_key, date_key = EXCLUDED.date_key,
            code_key = EXCLUDED.code_key, value_num = EXCLUDED.value_num, value_unit = EXCLUDED.value_unit,
            interpretation = EXCLUDED.interpretation",
            record = form.record_join("ob"), person = form.person("ob")),
        &[&w, &wp],
    )? as i64;
    set_wm(&mut tx, "fact_observation", "edw.observation", w)?;
    set_wm(
        &mut tx,
        "fact_observation_patients",
        "edw.source_patient",
        0,
    )?;
    form.moves_read(&mut tx)?;
    step("fact_observation", rep.observations);

    let w = wm(&mut tx, "fact_measure_result")?;
    tx.execute(
        // (Both sides materialized: on Citus, this join of the shards' keys to a reference
        // table inside an INSERT … SELECT planned no task and inserted nothing, with no error.)
        "WITH k AS MATERIALIZED (
             SELECT measure_id, group_id FROM edw.measure_result WHERE change_no > $1
             UNION SELECT measure_id, group_id FROM edw.care_gap WHERE change_no > $1),
         d AS MATERIALIZED (SELECT measure_id, title FROM edw.measure_def)
         INSERT INTO mart.dim_measure (measure_id, group_id, name)
         SELECT k.measure_id, k.group_id, coalesce(d.title, k.measure_id)
         FROM k LEFT JOIN d ON d.measure_id = k.measure_id
         ON CONFLICT DO NOTHING",
        &[&w],
    )?;
    let (key, person_col, person_val) = form.fact_key("measure_result_id", "r.person_id");
    rep.measure_results = tx.execute(
        &format!("INSERT INTO mart.fact_measure_result (measure_result_id, patient_key, measure_key, period_year, population, count{person_col})
         SELECT r.id, dp.patient_key, dm.measure_key, extract(year FROM r.period_start), r.population, r.count{person_val}
         FROM edw.measure_result r
         JOIN mart.dim_patient dp ON dp.person_id = r.person_id AND dp.is_current
         JOIN mart.dim_measure dm ON dm.measure_id = r.measure_id AND dm.group_id = r.group_id
         WHERE r.change_no > $1
         ON CONFLICT ({key}) DO UPDATE SET patient_key = EXCLUDED.patient_key, count = EXCLUDED.count"),
        &[&w],
    )? as i64;
    set_wm(&mut tx, "fact_measure_result", "edw.measure_result", w)?;
    step("fact_measure_result", rep.measure_results);
    let w = wm(&mut tx, "fact_care_gap")?;
    let (key, person_col, person_val) = form.fact_key("care_gap_id", "g.person_id");
    rep.care_gaps = tx.execute(
        &format!("INSERT INTO mart.fact_care_gap (care_gap_id, patient_key, measure_key, date_key, status{person_col})
         SELECT g.id, dp.patient_key, dm.measure_key, to_char(g.detected_at AT TIME ZONE 'UTC', 'YYYYMMDD')::int, g.status{person_val}
         FROM edw.care_gap g
         JOIN mart.dim_patient dp ON dp.person_id = g.person_id AND dp.is_current
         JOIN mart.dim_measure dm ON dm.measure_id = g.measure_id AND dm.group_id = g.group_id
         WHERE g.change_no > $1
         ON CONFLICT ({key}) DO UPDATE SET patient_key = EXCLUDED.patient_key, status = EXCLUDED.status"),
        &[&w],
    )? as i64;
    set_wm(&mut tx, "fact_care_gap", "edw.care_gap", w)?;
    step("fact_care_gap", rep.care_gaps);

    // Summaries behind quality queries (a) and (b): rebuilt (a few thousand rows) when
    // gaps, patients, providers or attribution changed. Attribution is recomputed by
    // delete + insert, so a new max(id) means it changed.
    let wa = wm(&mut tx, "agg_attribution")?;
    let attr_max: i64 = tx
        .query_one("SELECT coalesce(max(id), 0) FROM edw.attribution", &[])?
        .get(0);
    if rep.care_gaps > 0 || rep.patient_versions_added > 0 || rep.providers > 0 || attr_max != wa {
        tx.batch_execute(&format!(
            "DELETE FROM mart.agg_gap_provider_month;
             INSERT INTO mart.agg_gap_provider_month (provider_key, measure_key, year, month, met, eligible)
             SELECT pr.provider_key, g.measure_key, d.year, d.month,
                    count(*) FILTER (WHERE g.status = 'closed'), count(*)
             FROM mart.fact_care_gap g
             JOIN mart.dim_patient p ON p.patient_key = g.patient_key{gp}
             JOIN mart.current_attribution a ON a.person_id = p.person_id
             JOIN mart.dim_provider pr ON pr.practitioner_id = a.practitioner_id
             JOIN mart.dim_date d ON d.date_key = g.date_key
             WHERE g.status IN ('open', 'closed', 'prospective')
             GROUP BY 1, 2, 3, 4;
             DELETE FROM mart.agg_open_gap_care_team;
             INSERT INTO mart.agg_open_gap_care_team (care_team_id, open_gaps, patients)
             SELECT a.care_team_id, count(*), count(DISTINCT g.patient_key)
             FROM mart.fact_care_gap g
             JOIN mart.dim_patient p ON p.patient_key = g.patient_key{gp}
             JOIN mart.current_attribution a ON a.person_id = p.person_id
             WHERE g.status = 'open' AND a.care_team_id IS NOT NULL
             GROUP BY 1;",
            gp = form.same_person("g", "p")
        ))?;
        tx.execute(
            "UPDATE mart.etl_watermark SET last_change_no = $1, updated_at = now()
             WHERE table_name = 'agg_attribution'",
            &[&attr_max],
        )?;
        rep.summaries_rebuilt = true;
        if progress {
            eprintln!(
                "etl: summaries for queries (a) and (b) rebuilt ({:.1}s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    tx.commit()?;
    Ok(rep)
}

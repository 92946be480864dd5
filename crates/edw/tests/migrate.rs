use testkit::pgharness::PgHarness;

#[test]
fn migrations_apply_to_empty_db_and_are_idempotent() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("m").unwrap();
    let mut c = edw::connect(&url).unwrap();
    assert_eq!(edw::migrate::current_version(&mut c).unwrap(), None);
    let applied = edw::migrate::migrate(&mut c).unwrap();
    assert_eq!(applied.len(), edw::migrate::MIGRATIONS.len());
    assert_eq!(
        edw::migrate::current_version(&mut c).unwrap(),
        Some(edw::migrate::latest_version())
    );
    let count_objects = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
             WHERE n.nspname IN ('staging','edw','mart','audit')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = count_objects(&mut c);
    assert!(before > 50, "expected many relations, got {before}");
    // Second run: nothing applied, nothing changed.
    assert!(edw::migrate::migrate(&mut c).unwrap().is_empty());
    assert_eq!(count_objects(&mut c), before);
    let n: i64 = c
        .query_one("SELECT count(*) FROM public.schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n as usize, edw::migrate::MIGRATIONS.len());
    // Every index in our schemas carries a comment saying why it exists (pkeys/uniques excepted).
    let uncommented: Vec<String> = c
        .query(
            "SELECT n.nspname || '.' || cl.relname FROM pg_index i
             JOIN pg_class cl ON cl.oid = i.indexrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
             WHERE n.nspname IN ('staging','edw','mart','audit') AND NOT i.indisprimary
               AND NOT i.indisunique AND obj_description(cl.oid, 'pg_class') IS NULL
               AND NOT cl.relispartition",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        uncommented.is_empty(),
        "indexes without comment: {uncommented:?}"
    );
}

#[test]
fn tampered_migration_is_rejected() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("m").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    c.execute(
        "UPDATE public.schema_migrations SET checksum = 'x' WHERE version = 2",
        &[],
    )
    .unwrap();
    let e = edw::migrate::migrate(&mut c).unwrap_err();
    assert!(e.0.contains("forward-only"), "{e}");
}

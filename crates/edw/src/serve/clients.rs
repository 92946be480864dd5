//! `phm-edw client add|list|revoke`: SMART Backend Services clients.
//!
//! A client belongs to one organisation and is granted Groups (`edw.patient_group`).
//! Each organisation has a PostgreSQL role `edw_org_<org id>` (NOLOGIN, member of
//! `edw_org_reader`, mapped in `edw.org_role`) granted to `edw_api`, so the server's
//! login role (a member of `edw_api`) can `SET ROLE` to it. `client add` needs a role
//! that may create roles (a superuser or CREATEROLE); on a Citus cluster a superuser, since
//! the role gets a login to the workers that only Citus knows (migration 1005).

use base64::Engine;

fn err(m: impl Into<String>) -> crate::Error {
    crate::Error::msg(m)
}

/// Where a client's public keys come from.
pub enum Jwks {
    Inline(serde_json::Value),
    Url(String),
}

/// The new client's id.
pub fn add(
    c: &mut postgres::Client,
    name: &str,
    org: &str,
    jwks: &Jwks,
    groups: &[i64],
) -> crate::Result<String> {
    if name.trim().is_empty() {
        return Err(err("--name must not be empty"));
    }
    match jwks {
        Jwks::Inline(v) => {
            super::smart::validate_jwks(v).map_err(|e| err(format!("--jwks: {e}")))?
        }
        Jwks::Url(u) => {
            if !u.starts_with("https://") {
                return Err(err("--jwks-url must be an https:// URL"));
            }
        }
    }
    let mut tx = c.transaction()?;
    let orgs: Vec<i64> = match org.parse::<i64>() {
        Ok(id) => tx
            .query("SELECT id FROM edw.organization WHERE id = $1", &[&id])?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        Err(_) => tx
            .query(
                "SELECT id FROM edw.organization WHERE source_id = $1 ORDER BY id",
                &[&org],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let org_id = match orgs.as_slice() {
        [one] => *one,
        [] => return Err(err(format!("--org {org}: no such organization"))),
        _ => {
            let m = "several organizations have this source id; give the EDW organization id";
            return Err(err(format!("--org {org}: {m}")));
        }
    };
    for g in groups {
        if tx
            .query_opt("SELECT 1 FROM edw.patient_group WHERE id = $1", &[g])?
            .is_none()
        {
            return Err(err(format!(
                "--group {g}: no such Group (edw.patient_group)"
            )));
        }
    }
    let role = format!("edw_org_{org_id}");
    let q = super::quote_ident(&role);
    let exists = tx
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE ROLE {q} NOLOGIN IN ROLE edw_org_reader"))?;
    }
    tx.batch_execute(&format!("GRANT {q} TO edw_api"))?;
    // On the cluster the role logs in to the workers (migration 1005); needs a superuser.
    let needs_node_login: bool = tx
        .query_one(
            "SELECT to_regprocedure('edw.org_role_node_login(text)') IS NOT NULL
                    AND NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )?
        .get(0);
    if needs_node_login {
        tx.execute("SELECT edw.org_role_node_login($1)", &[&role])?;
    }
    tx.execute(
        "INSERT INTO edw.org_role (role_name, org_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&role, &org_id],
    )?;
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| err("no randomness"))?;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let (inline, url) = match jwks {
        Jwks::Inline(v) => (Some(v.to_string()), None),
        Jwks::Url(u) => (None, Some(u.clone())),
    };
    tx.execute(
        "INSERT INTO auth.client (id, name, org_id, org_role, jwks, jwks_url)
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)",
        &[&id, &name, &org_id, &role, &inline, &url],
    )?;
    for g in groups {
        tx.execute(
            "INSERT INTO auth.client_group (client_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, g],
        )?;
    }
    tx.commit()?;
    Ok(id)
}

/// One line per client: id, name, organization id, Groups, JWKS kind, created, revoked.
pub fn list(c: &mut postgres::Client) -> crate::Result<Vec<String>> {
    let rows = c.query(
        "SELECT c.id, c.name, c.org_id,
                coalesce((SELECT string_agg(g.group_id::text, ',' ORDER BY g.group_id)
                          FROM auth.client_group g WHERE g.client_id = c.id), ''),
                CASE WHEN c.jwks IS NOT NULL THEN 'jwks:inline' ELSE 'jwks-url:' || c.jwks_url END,
                to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                coalesce(to_char(c.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-')
         FROM auth.client c ORDER BY c.created_at, c.id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "{}\t{}\torg={}\tgroups={}\t{}\tcreated={}\trevoked={}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(4),
                r.get::<_, String>(5),
                r.get::<_, String>(6),
            )
        })
        .collect())
}

/// Revokes a client: its assertions are refused and its access tokens stop working now.
pub fn revoke(c: &mut postgres::Client, id: &str) -> crate::Result<()> {
    let mut tx = c.transaction()?;
    let n = tx.execute(
        "UPDATE auth.client SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
        &[&id],
    )?;
    if n == 0 {
        return Err(err(format!("no client {id}")));
    }
    tx.execute("DELETE FROM auth.access_token WHERE client_id = $1", &[&id])?;
    tx.commit()?;
    Ok(())
}

//! `phm-edw serve`: a small HTTP API over the EDW.
//! * `GET /health`  – process is up (no DB access).
//! * `GET /ready`   – DB reachable and migrated to this binary's schema version.
//! * `GET /fhir/Patient/{id}` – the enterprise Patient (person id), bearer-token protected
//!   (static token from `PHM_EDW_TOKEN` for now; SMART Backend Services later).
//!   Every attempt (200/401/404) is written to `audit.phi_access` *before* the answer;
//!   if the audit write fails the request fails (500) and no PHI is returned.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// The authenticated SMART client of a request, resolved from its access token
/// (see `FromRequestParts` below). Handlers take it as an extractor: a request
/// without a valid token is refused (401, audited) before any handler runs.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client_id: String,
    /// PostgreSQL role of the client's organisation: every query of the request runs
    /// after `SET LOCAL ROLE` to it, so row-level security applies.
    pub org_role: String,
    /// `edw.patient_group` ids the client was granted.
    pub groups: Vec<i64>,
    /// Granted scopes (SMART v1 / v2 system scopes).
    pub scopes: Vec<String>,
}

/// Shared state of the server.
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    /// Public base URL of this server (`https://127.0.0.1:8443`), for `Content-Location`,
    /// the token endpoint and manifest file URLs.
    pub base_url: String,
    /// Where export files are written (mode 0700), until they expire.
    pub export_dir: std::path::PathBuf,
}

impl<S> axum::extract::FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<AppState>: axum::extract::FromRef<S>,
{
    type Rejection = Response;
    async fn from_request_parts(
        _parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        // Filled in with the SMART access-token check.
        Err(outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "missing or invalid access token",
        ))
    }
}

/// Starts a transaction that runs as the caller's organisation role.
pub async fn begin_as<'a>(
    client: &'a mut deadpool_postgres::Object,
    caller: &Caller,
) -> Result<deadpool_postgres::Transaction<'a>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {}",
        quote_ident(&caller.org_role)
    ))
    .await?;
    Ok(tx)
}

/// A PostgreSQL identifier, quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub struct App {
    pub db: String,
    token_hash: [u8; 32],
}

impl App {
    pub fn new(db: String, token: &str) -> crate::Result<App> {
        if token.len() < 16 {
            return Err(crate::Error::msg(
                "PHM_EDW_TOKEN must be set to a secret of at least 16 characters",
            ));
        }
        Ok(App {
            db,
            token_hash: Sha256::digest(token.as_bytes()).into(),
        })
    }
    /// Compare hashes in constant time (no early exit on the first differing byte).
    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(t) = v.strip_prefix("Bearer ") else {
            return false;
        };
        let h: [u8; 32] = Sha256::digest(t.trim().as_bytes()).into();
        h.iter()
            .zip(self.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

async fn db(app: &App) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(&app.db, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            format!(
                "database unreachable: {}",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            )
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

pub fn outcome(status: StatusCode, code: &str, msg: &str) -> Response {
    json(
        status,
        serde_json::json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": msg}]}),
    )
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let c = match db(&app).await {
        Ok(c) => c,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
    };
    let v: Option<i32> = match c
        .query_one(
            "SELECT CASE WHEN to_regclass('public.schema_migrations') IS NULL THEN NULL
                    ELSE (SELECT max(version) FROM public.schema_migrations) END",
            &[],
        )
        .await
    {
        Ok(r) => r.get(0),
        Err(_) => None,
    };
    match v {
        Some(v) if v >= crate::migrate::latest_version() => {
            (StatusCode::OK, format!("ready: schema version {v}\n")).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: schema version {v:?}, need {}\n",
                crate::migrate::latest_version()
            ),
        )
            .into_response(),
    }
}

async fn audit(
    c: &tokio_postgres::Client,
    actor: &str,
    id: &str,
    status: StatusCode,
    client: &SocketAddr,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO audit.phi_access (actor, action, resource_type, resource_id, outcome, client)
         VALUES ($1, 'read', 'Patient', $2, $3, $4)",
        &[
            &actor,
            &id,
            &(status.as_u16() as i32),
            &client.ip().to_string(),
        ],
    )
    .await
    .map(|_| ())
}

const PATIENT_SQL: &str = "
SELECT jsonb_build_object(
  'resourceType', 'Patient',
  'id', p.id::text,
  'identifier', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('system', i.system, 'value', i.value))
      FROM edw.patient_identifier i JOIN edw.source_patient s ON s.id = i.source_patient_id
      WHERE s.person_id = p.id AND i.valid_to IS NULL), '[]'),
  'name', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('use', nullif(n.use, ''), 'family', n.family,
                      'given', to_jsonb(string_to_array(n.given, ' '))))
      FROM edw.patient_name n JOIN edw.source_patient s ON s.id = n.source_patient_id
      WHERE s.person_id = p.id AND n.valid_to IS NULL), '[]'),
  'gender', (SELECT s.sex FROM edw.source_patient s WHERE s.person_id = p.id AND s.sex IS NOT NULL ORDER BY s.id LIMIT 1),
  'birthDate', (SELECT s.birth_date::text FROM edw.source_patient s WHERE s.person_id = p.id AND s.birth_date IS NOT NULL ORDER BY s.id LIMIT 1),
  'address', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('line', jsonb_build_array(a.line), 'city', a.city,
                      'state', a.state, 'postalCode', a.postal_code))
      FROM edw.patient_address a JOIN edw.source_patient s ON s.id = a.source_patient_id
      WHERE s.person_id = p.id AND a.valid_to IS NULL), '[]'),
  'telecom', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('system', t.system, 'value', t.value))
      FROM edw.patient_telecom t JOIN edw.source_patient s ON s.id = t.source_patient_id
      WHERE s.person_id = p.id AND t.valid_to IS NULL), '[]')
)::text
FROM edw.person p WHERE p.id = $1";

async fn read_patient(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let c = match db(&app).await {
        Ok(c) => c,
        Err(_) => {
            return outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "database unavailable",
            )
        }
    };
    let id_for_audit: String = id.chars().take(64).collect();
    if !app.token_ok(&headers) {
        if audit(
            &c,
            "anonymous",
            &id_for_audit,
            StatusCode::UNAUTHORIZED,
            &peer,
        )
        .await
        .is_err()
        {
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "audit write failed",
            );
        }
        let mut r = outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "missing or invalid bearer token",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("static header"),
        );
        return r;
    }
    let actor = "static-token";
    let found: Option<String> = match id.parse::<i64>() {
        Ok(pid) => match c.query_opt(PATIENT_SQL, &[&pid]).await {
            Ok(r) => r.map(|r| r.get(0)),
            Err(_) => {
                return outcome(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "query failed",
                )
            }
        },
        Err(_) => None,
    };
    let status = if found.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    if audit(&c, actor, &id_for_audit, status, &peer)
        .await
        .is_err()
    {
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "audit write failed",
        );
    }
    match found {
        Some(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            body,
        )
            .into_response(),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "no such Patient"),
    }
}

/// `POST /worklist-actions`: a workstation writes back one worklist action.
/// Body: `{"workstation_id", "event_id", "person_id", "action", "acted_at", "note"?}`.
/// Idempotent per (workstation_id, event_id): 201 when stored, 200 when already present.
async fn post_worklist_action(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let c = match db(&app).await {
        Ok(c) => c,
        Err(_) => {
            return outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "database unavailable",
            )
        }
    };
    let audit_w = |actor: &'static str, status: StatusCode, id: String| {
        let c = &c;
        async move {
            c.execute(
                "INSERT INTO audit.phi_access (actor, action, resource_type, resource_id, outcome, client)
                 VALUES ($1, 'write', 'WorklistAction', $2, $3, $4)",
                &[&actor, &id, &(status.as_u16() as i32), &peer.ip().to_string()],
            )
            .await
        }
    };
    if !app.token_ok(&headers) {
        if audit_w("anonymous", StatusCode::UNAUTHORIZED, String::new())
            .await
            .is_err()
        {
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "audit write failed",
            );
        }
        return outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "missing or invalid bearer token",
        );
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("body is not JSON: {e}"),
            )
        }
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .filter(|x| !x.trim().is_empty())
    };
    let (Some(ws), Some(ev), Some(action), Some(acted_at)) = (
        s("workstation_id"),
        s("event_id"),
        s("action"),
        s("acted_at"),
    ) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "workstation_id, event_id, action and acted_at are required strings",
        );
    };
    let Some(person) = v.get("person_id").and_then(serde_json::Value::as_i64) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "person_id (integer) is required",
        );
    };
    if crate::validate::check_datetime(acted_at).is_err() || !acted_at.contains('T') {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "acted_at must be a FHIR dateTime with time zone",
        );
    }
    let note = s("note");
    let r = c
        .execute(
            "INSERT INTO edw.worklist_action (workstation_id, event_id, person_id, action, note, acted_at)
             SELECT $1, $2, p.id, $3, $4, $5::text::timestamptz FROM edw.person p WHERE p.id = $6
             ON CONFLICT (workstation_id, event_id) DO NOTHING",
            &[&ws, &ev, &action, &note, &acted_at, &person],
        )
        .await;
    let status = match r {
        Ok(1) => StatusCode::CREATED,
        Ok(_) => {
            let exists = c
                .query_opt(
                    "SELECT 1 FROM edw.worklist_action WHERE workstation_id = $1 AND event_id = $2",
                    &[&ws, &ev],
                )
                .await
                .map(|r| r.is_some())
                .unwrap_or(false);
            if exists {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            }
        }
        Err(_) => {
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "insert failed",
            )
        }
    };
    if audit_w(
        "static-token",
        status,
        format!("{ws}/{ev}").chars().take(64).collect(),
    )
    .await
    .is_err()
    {
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "audit write failed",
        );
    }
    match status {
        StatusCode::NOT_FOUND => outcome(status, "not-found", "no such person"),
        _ => json(
            status,
            serde_json::json!({"workstation_id": ws, "event_id": ev}),
        ),
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/fhir/Patient/{id}", get(read_patient))
        .route(
            "/worklist-actions",
            axum::routing::post(post_worklist_action),
        )
        .with_state(app)
}

/// Run the server until Ctrl-C / SIGTERM.
pub fn serve(db_url: String, addr: &str, token: &str) -> crate::Result<()> {
    let app = Arc::new(App::new(db_url, token)?);
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| crate::Error::msg(format!("--addr: not a socket address: {addr}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Make sure this month's audit partition exists.
        if let Ok(c) = db(&app).await {
            let _ = c
                .execute("SELECT audit.ensure_phi_access_partition(now())", &[])
                .await;
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("serve: listening on http://{}", listener.local_addr()?);
        axum::serve(
            listener,
            router(app).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        })
        .await?;
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}

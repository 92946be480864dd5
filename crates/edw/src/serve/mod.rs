//! `phm-edw serve`: the EDW's HTTPS API for workstations and other SMART Backend
//! Services clients.
//!
//! * `GET /health` – process is up (no DB access); `GET /ready` – DB reachable and migrated.
//! * `GET /.well-known/smart-configuration` (also under `/fhir/`), `POST /auth/token`:
//!   SMART Backend Services (`private_key_jwt`, RS384/ES384) – see [`smart`].
//! * `GET /fhir/metadata` (no auth), `GET /fhir/Group` (the Groups granted to the client),
//!   `GET /fhir/Patient/{id}`, and the Bulk Data export routes of `crate::bulk`.
//! * `POST /api/actions` – worklist actions written back ([`actions`]);
//!   `POST /api/audit`, `GET /api/audit/head` – workstation audit chains ([`audit`]).
//!
//! Every request with a token runs its queries in [`begin_as`]: a transaction as the
//! client's organisation role, so (FORCEd) row-level security applies. A request
//! without a valid token is refused before any query of clinical data: the token
//! lookup and the refusal's audit row are its only database work. Every PHI access and
//! every refusal is written to `audit.phi_access` before the answer; if that write
//! fails the request fails (500) and no PHI is returned. Logs and error bodies carry
//! no PHI.

pub mod actions;
pub mod audit;
pub mod clients;
pub mod pg;
pub mod smart;
pub mod tls;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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

impl Caller {
    /// Whether a granted scope allows reading and searching `resource_type`
    /// (`system/*.read`, `system/*.rs`, `system/Patient.rs`, ...).
    pub fn may_read(&self, resource_type: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| smart::parse_scope(s).is_some_and(|(t, _)| t == "*" || t == resource_type))
    }
}

/// Shared state of the server.
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    /// Public base URL of this server (`https://127.0.0.1:8443`), for `Content-Location`,
    /// the token endpoint and manifest file URLs.
    pub base_url: String,
    /// Where export files are written (mode 0700), until they expire.
    pub export_dir: std::path::PathBuf,
    /// The token endpoint's state: JWKS fetched by URL, their trust roots.
    pub smart: smart::SmartState,
    /// Whether the warehouse is in its distributed (Citus) form, once known
    /// ([`AppState::distributed`]).
    pub form: std::sync::OnceLock<bool>,
}

impl AppState {
    /// Whether the warehouse is distributed (`migrate --citus`), asked of the database once
    /// per process: distributing the warehouse is done with the server stopped.
    pub async fn distributed(
        &self,
        c: &impl tokio_postgres::GenericClient,
    ) -> Result<bool, tokio_postgres::Error> {
        if let Some(d) = self.form.get() {
            return Ok(*d);
        }
        let d: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM public.schema_migrations WHERE version >= $1)",
                &[&crate::migrate::CITUS_FIRST],
            )
            .await?
            .get(0);
        Ok(*self.form.get_or_init(|| d))
    }

    /// `{base_url}/auth/token`: the `aud` every client assertion must carry.
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base_url)
    }
}

/// The request's peer address, when known (an extractor that never fails).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer_of(parts)))
    }
}

/// The request's peer address, when known.
fn peer_of(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// What a path is about, for the PHI access log of a refused request.
fn path_resource(path: &str) -> (&'static str, &'static str, Option<String>) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = |i: usize| segs.get(i).map(|s| s.chars().take(64).collect::<String>());
    match segs.as_slice() {
        ["fhir", "Patient", ..] => ("read", "Patient", id(2)),
        ["fhir", "Group", _, "$export", ..] => ("export", "Group", id(2)),
        ["fhir", "Group", ..] => ("read", "Group", id(2)),
        ["fhir", "bulk", ..] => ("export", "ExportJob", None),
        ["fhir", ..] => ("read", "Bulk", None),
        ["api", "actions", ..] => ("write", "WorklistAction", None),
        ["api", "audit", ..] => ("write", "AuditEvent", None),
        _ => ("read", "Unknown", None),
    }
}

impl<S> axum::extract::FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<AppState>: axum::extract::FromRef<S>,
{
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let app: Arc<AppState> = axum::extract::FromRef::from_ref(state);
        let peer = peer_of(parts);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, t) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| t.trim().to_string())
            })
            .filter(|t| !t.is_empty() && t.len() <= 512);
        let c = match app.pool.get().await {
            Ok(c) => c,
            Err(_) => return Err(unavailable()),
        };
        let found = match &token {
            Some(t) => match smart::lookup_token(&c, t).await {
                Ok(x) => x,
                Err(_) => {
                    return Err(outcome(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "exception",
                        "token lookup failed",
                    ))
                }
            },
            None => None,
        };
        match found {
            Some(caller) => Ok(caller),
            None => {
                let (action, rtype, rid) = path_resource(parts.uri.path());
                if audit_access(
                    &c,
                    "anonymous",
                    action,
                    rtype,
                    rid.as_deref(),
                    StatusCode::UNAUTHORIZED,
                    peer,
                )
                .await
                .is_err()
                {
                    return Err(audit_failed());
                }
                let mut r = outcome(
                    StatusCode::UNAUTHORIZED,
                    "login",
                    if token.is_some() {
                        "invalid or expired access token"
                    } else {
                        "an access token is required (SMART Backend Services: POST /auth/token)"
                    },
                );
                let v = if token.is_some() {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                };
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(v),
                );
                Err(r)
            }
        }
    }
}

/// Starts a transaction that runs as the caller's organisation role.
pub async fn begin_as<'a>(
    client: &'a mut deadpool_postgres::Object,
    caller: &Caller,
) -> Result<deadpool_postgres::Transaction<'a>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(&caller.org_role)))
        .await?;
    Ok(tx)
}

/// A PostgreSQL identifier, quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// One row of the PHI access log: who (`actor`: client id or `anonymous`), what
/// (`action`: read/write/export/token, the resource type and id), the HTTP status and
/// the peer address. `detail` stays NULL here (the bulk export fills it).
pub async fn audit_access(
    c: &impl deadpool_postgres::GenericClient,
    actor: &str,
    action: &str,
    resource_type: &str,
    resource_id: Option<&str>,
    status: StatusCode,
    peer: Option<SocketAddr>,
) -> Result<(), tokio_postgres::Error> {
    let actor: String = actor.chars().take(128).collect();
    c.execute(
        "INSERT INTO audit.phi_access (actor, action, resource_type, resource_id, outcome, client)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &actor,
            &action,
            &resource_type,
            &resource_id,
            &(status.as_u16() as i32),
            &peer.map(|p| p.ip().to_string()),
        ],
    )
    .await
    .map(|_| ())
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
    json(status, protocol::operation_outcome(code, msg))
}

fn unavailable() -> Response {
    let mut r = outcome(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        "database unavailable",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

fn audit_failed() -> Response {
    outcome(
        StatusCode::INTERNAL_SERVER_ERROR,
        "exception",
        "audit write failed",
    )
}

/// A 500 for a failed database call. The log gets the SQLSTATE only: a message or its
/// detail may quote a patient's values.
pub(crate) fn query_failed(e: &tokio_postgres::Error) -> Response {
    let code = e
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| "connection".into());
    eprintln!("serve: query failed (SQLSTATE {code})");
    outcome(
        StatusCode::INTERNAL_SERVER_ERROR,
        "exception",
        "query failed",
    )
}

/// Audits a refusal of an authenticated caller (in its own statement, as the server's
/// role) and answers it.
#[allow(clippy::too_many_arguments)]
async fn refuse(
    app: &AppState,
    caller: &Caller,
    action: &str,
    rtype: &str,
    rid: Option<&str>,
    peer: Option<SocketAddr>,
    status: StatusCode,
    code: &str,
    msg: &str,
) -> Response {
    let Ok(c) = app.pool.get().await else {
        return unavailable();
    };
    if audit_access(&c, &caller.client_id, action, rtype, rid, status, peer)
        .await
        .is_err()
    {
        return audit_failed();
    }
    outcome(status, code, msg)
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let c = match app.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: database unreachable: {e}\n"),
            )
                .into_response()
        }
    };
    let v: Option<i32> = match c
        .query_one(
            // The single-node schema's version (the Citus migrations, numbered from
            // CITUS_FIRST, come on top of it).
            "SELECT CASE WHEN to_regclass('public.schema_migrations') IS NULL THEN NULL
                    ELSE (SELECT max(version) FROM public.schema_migrations WHERE version < $1) END",
            &[&crate::migrate::CITUS_FIRST],
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

/// `GET /fhir/metadata`: the R4 CapabilityStatement (Bulk Data, SMART token URL).
async fn metadata(State(app): State<Arc<AppState>>) -> Response {
    let base = &app.base_url;
    json(
        StatusCode::OK,
        serde_json::json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": access::time::rfc3339_from_unix_ms(access::time::now_unix_ms()),
            "publisher": "PHM EDW",
            "kind": "instance",
            "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            "software": {"name": "phm-edw", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "PHM enterprise data warehouse", "url": format!("{base}/fhir")},
            "fhirVersion": "4.0.1",
            "format": ["json", "application/fhir+json", "application/fhir+ndjson"],
            "rest": [{
                "mode": "server",
                "security": {
                    "cors": false,
                    "service": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR"}]}],
                    "description": "SMART Backend Services: client_credentials with a private_key_jwt assertion (RS384 or ES384)",
                    "extension": [{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": app.token_url()}]
                    }]
                },
                "resource": [
                    {"type": "Group", "interaction": [{"code": "search-type"}],
                     "operation": [{"name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]},
                    {"type": "Patient", "interaction": [{"code": "read"}]}
                ],
                "operation": [{"name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]
            }]
        }),
    )
}

/// `GET /fhir/Group`: a searchset Bundle of the Groups granted to the client, each with
/// the number of its members the client's organisation may see.
async fn list_groups(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    caller: Caller,
) -> Response {
    if !caller.may_read("Group") {
        return refuse(
            &app,
            &caller,
            "read",
            "Group",
            None,
            peer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "the granted scopes do not cover Group",
        )
        .await;
    }
    let Ok(mut c) = app.pool.get().await else {
        return unavailable();
    };
    let rows = async {
        let tx = begin_as(&mut c, &caller).await?;
        let rows = tx.query(GROUPS_SQL, &[&caller.groups]).await?;
        audit_access(
            &tx,
            &caller.client_id,
            "read",
            "Group",
            None,
            StatusCode::OK,
            peer,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(rows)
    }
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return query_failed(&e),
    };
    let entries: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let name: String = r.get(1);
            let n: i64 = r.get(2);
            serde_json::json!({
                "fullUrl": format!("{}/fhir/Group/{id}", app.base_url),
                "resource": {"resourceType": "Group", "id": id.to_string(), "type": "person",
                    "actual": true, "name": name, "quantity": n},
                "search": {"mode": "match"}
            })
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({"resourceType": "Bundle", "type": "searchset",
            "total": entries.len(), "entry": entries}),
    )
}

/// `GET /fhir/Group/{id}`: one granted Group (403 when not granted).
async fn read_group(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    caller: Caller,
) -> Response {
    let id_for_audit: String = id.chars().take(64).collect();
    let gid = id.parse::<i64>().ok().filter(|g| caller.groups.contains(g));
    let Some(gid) = gid.filter(|_| caller.may_read("Group")) else {
        return refuse(
            &app,
            &caller,
            "read",
            "Group",
            Some(&id_for_audit),
            peer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "this Group is not granted to the client",
        )
        .await;
    };
    let Ok(mut c) = app.pool.get().await else {
        return unavailable();
    };
    let r = async {
        let tx = begin_as(&mut c, &caller).await?;
        let row = tx.query_opt(GROUPS_SQL, &[&vec![gid]]).await?;
        let status = if row.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        audit_access(
            &tx,
            &caller.client_id,
            "read",
            "Group",
            Some(&id_for_audit),
            status,
            peer,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(row.map(|r| (r.get::<_, String>(1), r.get::<_, i64>(2))))
    }
    .await;
    match r {
        Ok(Some((name, n))) => json(
            StatusCode::OK,
            serde_json::json!({"resourceType": "Group", "id": gid.to_string(), "type": "person",
                "actual": true, "name": name, "quantity": n}),
        ),
        Ok(None) => outcome(StatusCode::NOT_FOUND, "not-found", "no such Group"),
        Err(e) => query_failed(&e),
    }
}

/// Groups by id ($1) with their members the caller's organisation sees: id, name, count.
/// Counted per Group first: Citus plans no subquery correlated with a reference table
/// (edw.patient_group) on the distributed form.
const GROUPS_SQL: &str =
    "SELECT g.id, coalesce(g.name, g.kind || ' ' || g.ref_id), coalesce(n.members, 0)
FROM edw.patient_group g
LEFT JOIN (SELECT m.group_id, count(*) AS members FROM edw.patient_group_member m
           JOIN edw.person p ON p.id = m.person_id
           WHERE m.group_id = ANY($1) GROUP BY m.group_id) n ON n.group_id = g.id
WHERE g.id = ANY($1) ORDER BY g.id";

/// The enterprise Patient ($1 the person, $2 the granted Groups) as FHIR JSON text. On the
/// distributed form every join also matches on the person, which each row there carries, so
/// the whole read runs on the person's shard (Citus plans these correlated subqueries only
/// then).
fn patient_sql(distributed: bool) -> String {
    let on_person = |t: &str| {
        if distributed {
            format!(" AND {t}.person_id = s.person_id")
        } else {
            String::new()
        }
    };
    format!(
        "
SELECT jsonb_build_object(
  'resourceType', 'Patient',
  'id', p.id::text,
  'identifier', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('system', i.system, 'value', i.value))
      FROM edw.patient_identifier i JOIN edw.source_patient s ON s.id = i.source_patient_id{}
      WHERE s.person_id = p.id AND i.valid_to IS NULL), '[]'),
  'name', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('use', nullif(n.use, ''), 'family', n.family,
                      'given', to_jsonb(string_to_array(n.given, ' '))))
      FROM edw.patient_name n JOIN edw.source_patient s ON s.id = n.source_patient_id{}
      WHERE s.person_id = p.id AND n.valid_to IS NULL), '[]'),
  'gender', (SELECT s.sex FROM edw.source_patient s WHERE s.person_id = p.id AND s.sex IS NOT NULL ORDER BY s.id LIMIT 1),
  'birthDate', (SELECT s.birth_date::text FROM edw.source_patient s WHERE s.person_id = p.id AND s.birth_date IS NOT NULL ORDER BY s.id LIMIT 1),
  'address', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('line', jsonb_build_array(a.line), 'city', a.city,
                      'state', a.state, 'postalCode', a.postal_code))
      FROM edw.patient_address a JOIN edw.source_patient s ON s.id = a.source_patient_id{}
      WHERE s.person_id = p.id AND a.valid_to IS NULL), '[]'),
  'telecom', coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('system', t.system, 'value', t.value))
      FROM edw.patient_telecom t JOIN edw.source_patient s ON s.id = t.source_patient_id{}
      WHERE s.person_id = p.id AND t.valid_to IS NULL), '[]')
)::text
FROM edw.person p
WHERE p.id = $1
  AND EXISTS (SELECT 1 FROM edw.patient_group_member m WHERE m.person_id = p.id AND m.group_id = ANY($2))",
        on_person("i"),
        on_person("n"),
        on_person("a"),
        on_person("t")
    )
}

/// `GET /fhir/Patient/{id}`: the enterprise Patient (person id), when the client's
/// organisation may see them (RLS) and they are in a Group granted to the client;
/// otherwise 404 (whether the patient exists elsewhere is not told).
async fn read_patient(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    caller: Caller,
) -> Response {
    let id_for_audit: String = id.chars().take(64).collect();
    if !caller.may_read("Patient") {
        return refuse(
            &app,
            &caller,
            "read",
            "Patient",
            Some(&id_for_audit),
            peer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "the granted scopes do not cover Patient",
        )
        .await;
    }
    let Ok(mut c) = app.pool.get().await else {
        return unavailable();
    };
    let r = async {
        let distributed = app.distributed(&**c).await?;
        let tx = begin_as(&mut c, &caller).await?;
        let found: Option<String> = match id.parse::<i64>() {
            Ok(pid) => tx
                .query_opt(&patient_sql(distributed), &[&pid, &caller.groups])
                .await?
                .map(|r| r.get(0)),
            Err(_) => None,
        };
        let status = if found.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        audit_access(
            &tx,
            &caller.client_id,
            "read",
            "Patient",
            Some(&id_for_audit),
            status,
            peer,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(found)
    }
    .await;
    match r {
        Ok(Some(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            body,
        )
            .into_response(),
        Ok(None) => outcome(StatusCode::NOT_FOUND, "not-found", "no such Patient"),
        Err(e) => query_failed(&e),
    }
}

/// Every route of the server.
pub fn router(app: Arc<AppState>) -> Router {
    let r: Router<Arc<AppState>> = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/.well-known/smart-configuration",
            get(smart::configuration),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart::configuration),
        )
        .route("/auth/token", post(smart::token))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/Group", get(list_groups))
        .route("/fhir/Group/{id}", get(read_group))
        .route("/fhir/Patient/{id}", get(read_patient))
        .route("/api/actions", post(actions::post_actions))
        .route("/api/audit", post(audit::post_audit))
        .route("/api/audit/head", get(audit::get_head));
    // FHIR Bulk Data export (Group/{id}/$export, status, files): crate::bulk.
    let r = r.merge(crate::bulk::routes());
    r.with_state(app)
}

/// Options of `phm-edw serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub db: String,
    pub addr: String,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Self-signed certificate, export files. Default `$XDG_STATE_HOME/phm-edw`
    /// (or `~/.local/state/phm-edw`).
    pub state_dir: Option<std::path::PathBuf>,
    pub plain_http: bool,
    pub public_url: Option<String>,
    /// Extra trust root (PEM) for JWKS fetched by URL (tests, private CAs).
    pub jwks_ca: Option<std::path::PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
}

fn default_state_dir() -> std::path::PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return std::path::PathBuf::from(x).join("phm-edw");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    std::path::PathBuf::from(home).join(".local/state/phm-edw")
}

/// Run the server until Ctrl-C / SIGTERM.
pub fn serve(opts: ServeOptions) -> crate::Result<()> {
    let addr: SocketAddr = opts
        .addr
        .parse()
        .map_err(|_| crate::Error::msg(format!("--addr: not a socket address: {}", opts.addr)))?;
    if opts.plain_http && !addr.ip().is_loopback() {
        return Err(crate::Error::msg(format!(
            "--plain-http is only allowed on a loopback address (127.0.0.1, ::1), not {}",
            addr.ip()
        )));
    }
    if opts.tls_cert.is_some() != opts.tls_key.is_some() {
        return Err(crate::Error::msg("--tls-cert and --tls-key go together"));
    }
    let state_dir = opts.state_dir.clone().unwrap_or_else(default_state_dir);
    let tls_cfg = if opts.plain_http {
        None
    } else {
        let (cert, key) = match (&opts.tls_cert, &opts.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                let f = tls::self_signed(&state_dir)?;
                eprintln!(
                    "serve: {} self-signed certificate {} (SHA-256 {})",
                    if f.created { "made a" } else { "using the" },
                    f.cert.display(),
                    tls::fingerprint(&f.cert)?
                );
                (f.cert, f.key)
            }
        };
        Some(tls::server_config(&cert, &key)?)
    };
    let export_dir = state_dir.join("exports");
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&export_dir)
            .map_err(|e| crate::Error::msg(format!("{}: {e}", export_dir.display())))?;
        let _ = std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700));
        std::fs::set_permissions(&export_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let jwks_roots = smart::jwks_roots(opts.jwks_ca.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let pool = pg::pool(&opts.db, opts.pool_size.max(2))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let scheme = if tls_cfg.is_some() { "https" } else { "http" };
        let base_url = opts
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .to_string();
        let app = Arc::new(AppState {
            pool,
            form: std::sync::OnceLock::new(),
            base_url: base_url.clone(),
            export_dir,
            smart: smart::SmartState::new(jwks_roots),
        });
        // Make sure this month's audit partition exists.
        if let Ok(c) = app.pool.get().await {
            let _ = c
                .execute("SELECT audit.ensure_phi_access_partition(now())", &[])
                .await;
        }
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        let svc = router(app).into_make_service_with_connect_info::<SocketAddr>();
        eprintln!("serve: listening on {scheme}://{local} (public URL {base_url})");
        match tls_cfg {
            Some(cfg) => {
                use axum::serve::ListenerExt;
                let l = tls::TlsListener::new(listener, cfg)?.tap_io(|_| {});
                axum::serve(l, svc).with_graceful_shutdown(shutdown).await?
            }
            None => {
                axum::serve(listener, svc)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
        }
        Ok::<(), crate::Error>(())
    })?;
    Ok(())
}

/// SHA-256 of bytes (tokens, payloads).
pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

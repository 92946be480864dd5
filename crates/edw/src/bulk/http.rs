//! The Bulk Data async request pattern over [`super::engine`]:
//! * `GET|POST /fhir/Group/{id}/$export` (kick-off; GET query `_since`, `_type`,
//!   `_typeFilter`, `_outputFormat`; POST a FHIR Parameters body): `Accept:
//!   application/fhir+json` (absent is taken as that, as the IG allows) and `Prefer:
//!   respond-async` (400 otherwise); unknown Group 404, Group not granted 403
//!   (audited); 202 with `Content-Location: {base}/fhir/bulk/status/{job}`.
//! * `GET /fhir/bulk/status/{job}`: 202 + `X-Progress` + `Retry-After` while running,
//!   200 + manifest + `Expires` when done, 500 + OperationOutcome when failed, 404 for
//!   an unknown, expired or cancelled job or another client's. `DELETE` cancels a
//!   running job or deletes a finished one's files (202).
//! * `GET /fhir/bulk/files/{job}/{name}.ndjson`: `application/fhir+ndjson`, same client
//!   only, `Range: bytes=N-` / `N-M` / `-S` (206, 416), streamed from disk.
//!
//! Jobs live in `edw.bulk_job`; the export runs in a tokio task on a pooled connection
//! as the client's organisation role. Files expire [`file_ttl_secs`] after the job
//! finishes (default 1 hour; `PHM_EDW_EXPORT_TTL_SECS` or [`set_file_ttl_secs`]); a
//! sweep (every minute, and at each kick-off) deletes expired jobs and their files.
//! Every kick-off and refusal and every file download is written to `audit.phi_access`
//! (`detail`: Group, types, `_since`, filters, patient count / byte range).

use super::engine::{self, Export, Plan, Progress};
use crate::serve::{begin_as, json, outcome, AppState, Caller, Peer};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use protocol::bulk::{ExportRequest, Manifest, ManifestFile, NDJSON};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Seconds between polls the status endpoint asks for.
pub const RETRY_AFTER_SECS: u64 = 1;

static TTL: AtomicU64 = AtomicU64::new(0);

/// How long finished exports' files are kept (default 3,600 s).
pub fn file_ttl_secs() -> u64 {
    match TTL.load(Ordering::Relaxed) {
        0 => std::env::var("PHM_EDW_EXPORT_TTL_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .unwrap_or(3_600),
        v => v,
    }
}

/// Sets [`file_ttl_secs`] (e.g. from a `serve` flag).
pub fn set_file_ttl_secs(secs: u64) {
    TTL.store(secs.max(1), Ordering::Relaxed);
}

/// Running jobs' progress and cancel flags (a job in the table as running but not here
/// died with a previous server process).
fn running() -> &'static Mutex<HashMap<String, Arc<Progress>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<Progress>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The Bulk Data routes (merged into the server's router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/fhir/Group/{id}/$export",
            get(kickoff_get).post(kickoff_post),
        )
        .route("/fhir/bulk/status/{job}", get(status).delete(cancel))
        .route("/fhir/bulk/files/{job}/{file}", get(download))
}

fn unavailable() -> Response {
    let mut r = outcome(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        "database unavailable",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn failed(what: &str) -> Response {
    outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", what)
}

/// One PHI access log row with its detail.
#[allow(clippy::too_many_arguments)]
async fn audit(
    c: &impl tokio_postgres::GenericClient,
    actor: &str,
    action: &str,
    resource_type: &str,
    resource_id: Option<&str>,
    status: StatusCode,
    peer: Option<std::net::SocketAddr>,
    detail: &Value,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO audit.phi_access (actor, action, resource_type, resource_id, outcome, client, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
        &[
            &actor.chars().take(128).collect::<String>(),
            &action,
            &resource_type,
            &resource_id,
            &(status.as_u16() as i32),
            &peer.map(|p| p.ip().to_string()),
            &detail.to_string(),
        ],
    )
    .await
    .map(|_| ())
}

/// `Prefer` directives (all values, comma-separated).
fn prefer(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase().replace(' ', ""))
        .collect()
}

fn check_headers(headers: &HeaderMap) -> Result<bool, String> {
    if let Some(a) = headers.get(header::ACCEPT) {
        let a = a.to_str().unwrap_or("").to_ascii_lowercase();
        if !["application/fhir+json", "application/json", "*/*"]
            .iter()
            .any(|m| a.contains(m))
        {
            return Err("Accept must be application/fhir+json".into());
        }
    }
    let p = prefer(headers);
    if !p.iter().any(|d| d == protocol::bulk::PREFER_ASYNC) {
        return Err("Prefer: respond-async is required".into());
    }
    Ok(p.iter().any(|d| d == "handling=lenient"))
}

/// The kick-off query string's parameters.
fn request_from_query(q: &str, lenient: bool) -> Result<(ExportRequest, Vec<String>), String> {
    let mut r = ExportRequest::default();
    let mut ignored = Vec::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "_since" => r.since = Some(v.into_owned()),
            "_type" => r.types.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            ),
            "_typeFilter" => r.type_filters.push(v.into_owned()),
            "_outputFormat" => protocol::bulk::check_output_format(&v)?,
            other if lenient => ignored.push(format!("parameter {other:?} is not supported")),
            other => return Err(format!("parameter {other:?} is not supported")),
        }
    }
    Ok((r, ignored))
}

async fn kickoff_get(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Peer(peer): Peer,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = q.unwrap_or_default();
    kickoff(st, caller, peer, id, headers, Method::GET, q, None).await
}

async fn kickoff_post(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Peer(peer): Peer,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = q.unwrap_or_default();
    kickoff(st, caller, peer, id, headers, Method::POST, q, Some(body)).await
}

fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(crate::migrate::hex(&b))
}

#[allow(clippy::too_many_arguments)]
async fn kickoff(
    st: Arc<AppState>,
    caller: Caller,
    peer: Option<std::net::SocketAddr>,
    id: String,
    headers: HeaderMap,
    method: Method,
    query: String,
    body: Option<Bytes>,
) -> Response {
    start_sweeper(&st);
    let Ok(c) = st.pool.get().await else {
        return unavailable();
    };
    let gid_text: String = id.chars().take(64).collect();
    // Refusals are audited (as the server's role) before the answer.
    let refuse = |status: StatusCode, code: &'static str, msg: String, detail: Value| {
        let c = &c;
        let caller = &caller;
        let gid_text = gid_text.clone();
        async move {
            if audit(
                &***c,
                &caller.client_id,
                "export",
                "Group",
                Some(&gid_text),
                status,
                peer,
                &detail,
            )
            .await
            .is_err()
            {
                return failed("audit write failed");
            }
            outcome(status, code, &msg)
        }
    };
    let lenient = match check_headers(&headers) {
        Ok(l) => l,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, "invalid", m, json!({})).await,
    };
    let parsed = match &body {
        None => request_from_query(&query, lenient),
        Some(b) => {
            let v: Result<Value, _> = if b.is_empty() {
                Ok(json!({"resourceType": "Parameters"}))
            } else {
                serde_json::from_slice(b)
            };
            match v {
                Err(e) => Err(format!("the body is not JSON: {e}")),
                Ok(v) => ExportRequest::from_parameters(&v).and_then(|mut r| {
                    // Parameters in a POST's query string count too.
                    let (q, ignored) = request_from_query(&query, lenient)?;
                    r.since = r.since.or(q.since);
                    r.types.extend(q.types);
                    r.type_filters.extend(q.type_filters);
                    Ok((r, ignored))
                }),
            }
        }
    };
    let (req, ignored_params) = match parsed {
        Ok(x) => x,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, "invalid", m, json!({})).await,
    };
    let detail = json!({"group": gid_text, "types": req.types, "since": req.since,
        "typeFilter": req.type_filters, "method": method.as_str()});
    if let Some(s) = &req.since {
        if let Err(m) = engine::check_since(s) {
            return refuse(StatusCode::BAD_REQUEST, "invalid", m, detail).await;
        }
    }
    let mut plan = match Plan::new(&req.types, &req.type_filters, lenient) {
        Ok(p) => p,
        Err(m) => return refuse(StatusCode::BAD_REQUEST, "not-supported", m, detail).await,
    };
    plan.ignored.extend(ignored_params);
    let group: Option<i64> = match id.parse::<i64>() {
        Ok(g) => match c
            .query_opt("SELECT id FROM edw.patient_group WHERE id = $1", &[&g])
            .await
        {
            Ok(r) => r.map(|r| r.get(0)),
            Err(_) => return failed("query failed"),
        },
        Err(_) => None,
    };
    let Some(group) = group else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such Group".into(),
            detail,
        )
        .await;
    };
    if !caller.groups.contains(&group) {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this client is not granted this Group".into(),
            detail,
        )
        .await;
    }
    let needed: Vec<&str> = if req.types.is_empty() {
        vec!["Patient"]
    } else {
        req.types.iter().map(String::as_str).collect()
    };
    if let Some(t) = needed.iter().find(|t| !caller.may_read(t)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("no granted scope allows reading {t}"),
            detail,
        )
        .await;
    }
    let job = match random_id() {
        Ok(j) => j,
        Err(_) => return failed("no randomness"),
    };
    let request_url = format!(
        "{}/fhir/Group/{}/$export{}",
        st.base_url,
        group,
        if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        }
    );
    let stored = json!({"since": req.since, "types": req.types, "typeFilter": req.type_filters,
        "lenient": lenient, "method": method.as_str()});
    if let Err(_e) = c
        .execute(
            "INSERT INTO edw.bulk_job (id, client_id, group_id, request_url, request, expires_at)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, now() + interval '1 day')",
            &[
                &job,
                &caller.client_id,
                &group,
                &request_url,
                &stored.to_string(),
            ],
        )
        .await
    {
        return failed("could not record the job");
    }
    if audit(
        &**c,
        &caller.client_id,
        "export",
        "Group",
        Some(&group.to_string()),
        StatusCode::ACCEPTED,
        peer,
        &json!({"group": group, "types": req.types, "since": req.since,
            "typeFilter": req.type_filters, "job": job}),
    )
    .await
    .is_err()
    {
        let _ = c
            .execute("DELETE FROM edw.bulk_job WHERE id = $1", &[&job])
            .await;
        return failed("audit write failed");
    }
    drop(c);
    let progress = Arc::new(Progress::default());
    running()
        .lock()
        .expect("job registry")
        .insert(job.clone(), progress.clone());
    let run = Job {
        st: st.clone(),
        caller: caller.clone(),
        peer,
        job: job.clone(),
        group,
        since: req.since.clone(),
        plan,
        progress,
    };
    tokio::spawn(async move { run.run().await });
    let mut r = outcome_info(&format!("export of Group/{group} started"));
    *r.status_mut() = StatusCode::ACCEPTED;
    if let Ok(v) = HeaderValue::from_str(&format!("{}/fhir/bulk/status/{job}", st.base_url)) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

fn outcome_info(msg: &str) -> Response {
    json(
        StatusCode::OK,
        json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": msg}]}),
    )
}

struct Job {
    st: Arc<AppState>,
    caller: Caller,
    peer: Option<std::net::SocketAddr>,
    job: String,
    group: i64,
    since: Option<String>,
    plan: Plan,
    progress: Arc<Progress>,
}

impl Job {
    async fn run(self) {
        self.finish().await;
        // Only now: a status request for a job in the table as running and not in the
        // registry takes it for one of a previous server process.
        running().lock().expect("job registry").remove(&self.job);
    }

    async fn finish(&self) {
        let dir = self.st.export_dir.join(&self.job);
        let result = self.export(&dir).await;
        let Ok(c) = self.st.pool.get().await else {
            return;
        };
        match result {
            Ok((clock, w)) => {
                let file = |f: &engine::FileOut| ManifestFile {
                    resource_type: f.resource_type.clone(),
                    url: format!(
                        "{}/fhir/bulk/files/{}/{}.ndjson",
                        self.st.base_url, self.job, f.name
                    ),
                    count: Some(f.count),
                };
                let request_url: String = c
                    .query_opt(
                        "SELECT request_url FROM edw.bulk_job WHERE id = $1",
                        &[&self.job],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get(0))
                    .unwrap_or_default();
                let m = Manifest {
                    transaction_time: clock.transaction_time.clone(),
                    request: request_url,
                    requires_access_token: true,
                    output: w.output.iter().map(file).collect(),
                    deleted: w.deleted.iter().map(file).collect(),
                    error: w.error.iter().map(file).collect(),
                };
                let manifest = serde_json::to_string(&m).unwrap_or_default();
                let ttl = file_ttl_secs() as f64;
                let n = c
                    .execute(
                        "UPDATE edw.bulk_job SET status = 'completed', manifest = $2::text::jsonb,
                                transaction_time = $3::text::timestamptz, completed_at = now(),
                                patients_done = $4, patients_total = $4,
                                expires_at = now() + make_interval(secs => $5)
                         WHERE id = $1 AND status = 'running'",
                        &[
                            &self.job,
                            &manifest,
                            &clock.transaction_time,
                            &(w.patients as i64),
                            &ttl,
                        ],
                    )
                    .await;
                let _ = audit(
                    &**c,
                    &self.caller.client_id,
                    "export-complete",
                    "Group",
                    Some(&self.group.to_string()),
                    StatusCode::OK,
                    self.peer,
                    &json!({"group": self.group, "job": self.job, "patients": w.patients,
                        "since": self.since, "transactionTime": clock.transaction_time,
                        "files": w.output.len() + w.deleted.len() + w.error.len()}),
                )
                .await;
                if !matches!(n, Ok(1)) {
                    // Cancelled meanwhile.
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                if !matches!(e, engine::ExportError::Cancelled) {
                    let _ = c
                        .execute(
                            "UPDATE edw.bulk_job SET status = 'failed', error = $2, completed_at = now(),
                                    expires_at = now() + make_interval(secs => $3)
                             WHERE id = $1 AND status = 'running'",
                            &[&self.job, &e.to_string(), &(file_ttl_secs() as f64)],
                        )
                        .await;
                }
            }
        }
    }

    async fn export(
        &self,
        dir: &std::path::Path,
    ) -> Result<(engine::Clock, engine::Written), engine::ExportError> {
        let mut c = self
            .st
            .pool
            .get()
            .await
            .map_err(|_| engine::ExportError::Failed("database unavailable".into()))?;
        let since = match &self.since {
            Some(s) => engine::since_watermark(&**c, s).await?,
            None => None,
        };
        let clock = engine::kickoff_clock(&mut c).await?;
        let distributed = self.st.distributed(&**c).await?;
        let tx = begin_as(&mut c, &self.caller).await?;
        let w = engine::export(
            &tx,
            &Export {
                group_id: self.group,
                plan: &self.plan,
                since,
                dir,
                chunk: engine::CHUNK_PERSONS,
                max_lines: engine::MAX_FILE_LINES,
                progress: &self.progress,
                distributed,
            },
        )
        .await?;
        tx.commit().await?;
        Ok((clock, w))
    }
}

/// Status of a job of this client: (status, done, total, manifest, error, Expires).
type JobRow = (
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

async fn job_of(
    c: &impl tokio_postgres::GenericClient,
    job: &str,
    client: &str,
) -> Result<Option<JobRow>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT status, patients_done, patients_total, manifest::text, error,
                    to_char(expires_at AT TIME ZONE 'GMT', 'Dy, DD Mon YYYY HH24:MI:SS \"GMT\"')
             FROM edw.bulk_job
             WHERE id = $1 AND client_id = $2 AND status <> 'cancelled' AND expires_at > now()",
        &[&job, &client],
    )
    .await?
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
}

fn no_job() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such export job (unknown, expired or cancelled)",
    )
}

async fn status(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(job): Path<String>,
) -> Response {
    let Ok(c) = st.pool.get().await else {
        return unavailable();
    };
    let row = match job_of(&**c, &job, &caller.client_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return no_job(),
        Err(_) => return failed("query failed"),
    };
    match row.0.as_str() {
        "running" => {
            let p = running().lock().expect("job registry").get(&job).cloned();
            let Some(p) = p else {
                // Its server process ended before the job did.
                let _ = c
                    .execute(
                        "UPDATE edw.bulk_job SET status = 'failed', error = 'the server restarted during the export',
                                completed_at = now() WHERE id = $1 AND status = 'running'",
                        &[&job],
                    )
                    .await;
                return outcome(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "incomplete",
                    "the server restarted during the export; start a new one",
                );
            };
            let (done, total) = (
                p.done.load(Ordering::Relaxed),
                p.total.load(Ordering::Relaxed),
            );
            let mut r = StatusCode::ACCEPTED.into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{} of {} patients",
                group_digits(done),
                group_digits(total)
            )) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            r
        }
        "completed" => {
            let body = row.3.unwrap_or_default();
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&row.5) {
                r.headers_mut().insert(header::EXPIRES, v);
            }
            r
        }
        _ => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            row.4.as_deref().unwrap_or("the export failed"),
        ),
    }
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

async fn cancel(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(job): Path<String>,
) -> Response {
    let Ok(c) = st.pool.get().await else {
        return unavailable();
    };
    let n = c
        .execute(
            "UPDATE edw.bulk_job SET status = 'cancelled', completed_at = coalesce(completed_at, now())
             WHERE id = $1 AND client_id = $2 AND status <> 'cancelled' AND expires_at > now()",
            &[&job, &caller.client_id],
        )
        .await;
    match n {
        Ok(1) => {}
        Ok(_) => return no_job(),
        Err(_) => return failed("query failed"),
    }
    if let Some(p) = running().lock().expect("job registry").get(&job) {
        p.cancel.store(true, Ordering::Relaxed);
    }
    // A running job removes its own directory when it stops.
    let dir = st.export_dir.join(&job);
    if !running().lock().expect("job registry").contains_key(&job) {
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut r = outcome_info("export job cancelled; its files are deleted");
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// A byte range of a file of `len` bytes: `Ok(None)` whole file, `Err(())` unsatisfiable.
fn parse_range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None); // another unit: ignored
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file (allowed by RFC 9110)
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (s, e)
    };
    if len == 0 || start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A file region streamed in 64 KiB frames (never read whole into memory).
struct FileBody {
    f: std::fs::File,
    remaining: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::io::Read;
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024) as usize;
        let mut buf = vec![0u8; n];
        let r = self.f.read_exact(&mut buf);
        std::task::Poll::Ready(Some(match r {
            Ok(()) => {
                self.remaining -= n as u64;
                Ok(hyper::body::Frame::data(Bytes::from(buf)))
            }
            Err(e) => Err(e),
        }))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

async fn download(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Peer(peer): Peer,
    Path((job, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Ok(c) = st.pool.get().await else {
        return unavailable();
    };
    let row = match job_of(&**c, &job, &caller.client_id).await {
        Ok(r) => r,
        Err(_) => return failed("query failed"),
    };
    // Only files the manifest lists (no other path is ever opened).
    let listed = row
        .as_ref()
        .filter(|r| r.0 == "completed")
        .and_then(|r| r.3.as_deref())
        .and_then(|m| serde_json::from_str::<Manifest>(m).ok())
        .is_some_and(|m| {
            let suffix = format!("/{job}/{file}");
            m.output
                .iter()
                .chain(&m.deleted)
                .chain(&m.error)
                .any(|f| f.url.ends_with(&suffix))
        });
    let safe = file.ends_with(".ndjson")
        && file
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
        && !file.contains("..");
    let resource_id: String = format!("{job}/{file}").chars().take(200).collect();
    let log = |status: StatusCode, detail: Value| {
        let c = &c;
        let caller = &caller;
        let resource_id = resource_id.clone();
        async move {
            audit(
                &***c,
                &caller.client_id,
                "download",
                "Bulk",
                Some(&resource_id),
                status,
                peer,
                &detail,
            )
            .await
        }
    };
    if !(listed && safe) {
        if log(StatusCode::NOT_FOUND, json!({})).await.is_err() {
            return failed("audit write failed");
        }
        return outcome(StatusCode::NOT_FOUND, "not-found", "no such file");
    }
    let path = st.export_dir.join(&job).join(&file);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return outcome(StatusCode::NOT_FOUND, "not-found", "no such file"),
    };
    let len = match f.metadata() {
        Ok(m) => m.len(),
        Err(_) => return failed("file unreadable"),
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(v) => parse_range(v, len),
    };
    let (status, start, end) = match range {
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let _ = log(StatusCode::RANGE_NOT_SATISFIABLE, json!({"length": len})).await;
            let mut r = outcome(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid",
                "the range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if log(status, json!({"from": start, "bytes": count}))
        .await
        .is_err()
    {
        return failed("audit write failed");
    }
    drop(c);
    let mut f = f;
    if start > 0 {
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(start)).is_err() {
            return failed("file unreadable");
        }
    }
    let mut r = Response::new(Body::new(FileBody {
        f,
        remaining: count,
    }));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// Deletes expired jobs and their files.
pub async fn sweep(st: &AppState) -> Result<u64, tokio_postgres::Error> {
    let c = match st.pool.get().await {
        Ok(c) => c,
        Err(_) => return Ok(0),
    };
    let rows = c
        .query(
            "DELETE FROM edw.bulk_job WHERE expires_at <= now() OR
                 (status = 'cancelled' AND completed_at < now() - interval '1 hour')
             RETURNING id",
            &[],
        )
        .await?;
    for r in &rows {
        let id: String = r.get(0);
        if let Some(p) = running().lock().expect("job registry").get(&id) {
            p.cancel.store(true, Ordering::Relaxed);
            continue;
        }
        let _ = std::fs::remove_dir_all(st.export_dir.join(id));
    }
    Ok(rows.len() as u64)
}

/// Starts the periodic sweep once per process (a thread that runs [`sweep`] every
/// minute on the server's runtime), and sweeps now.
fn start_sweeper(st: &Arc<AppState>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    let handle = tokio::runtime::Handle::current();
    let now = st.clone();
    handle.spawn(async move {
        let _ = sweep(&now).await;
    });
    STARTED.get_or_init(|| {
        let st = Arc::downgrade(st);
        let _ = std::thread::Builder::new()
            .name("bulk-sweep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
                let Some(st) = st.upgrade() else { return };
                let _ = handle.block_on(sweep(&st));
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=4-", 10), Ok(Some((4, 9))));
        assert_eq!(parse_range("bytes=2-5", 10), Ok(Some((2, 5))));
        assert_eq!(parse_range("bytes=2-50", 10), Ok(Some((2, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=5-2", 10), Err(()));
        assert_eq!(parse_range("bytes=x-", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(group_digits(1200), "1,200");
        assert_eq!(group_digits(5_000_000), "5,000,000");
        assert_eq!(group_digits(12), "12");
    }

    #[test]
    fn query_parameters() {
        let (r, ig) = request_from_query(
            "_type=Patient,Observation&_typeFilter=Observation%3Fcode%3D4548-4&_since=2026-01-01T00:00:00Z&_outputFormat=application%2Ffhir%2Bndjson",
            false,
        )
        .unwrap();
        assert_eq!(r.types, vec!["Patient", "Observation"]);
        assert_eq!(r.type_filters, vec!["Observation?code=4548-4"]);
        assert!(ig.is_empty());
        assert!(request_from_query("patient=Patient/1", false).is_err());
        assert_eq!(request_from_query("patient=1", true).unwrap().1.len(), 1);
        assert!(request_from_query("_outputFormat=text/csv", true).is_err());
    }
}

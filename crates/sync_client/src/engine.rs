//! One sync: discovery, Groups, export kick-off and polling, the overlapped download and
//! apply, clean-up. See the crate docs.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache::{
    Cache, CacheError, StagedFile, StagedSync, SyncApply, SyncFileKind, SyncLine, SyncStage,
};
use protocol::bulk::{ExportRequest, Manifest};

use crate::http::{header, pct, read_small, status_error, Http, Method, FHIR_JSON};
use crate::keys::KeyPair;
use crate::testhook;
use crate::{SyncConfig, SyncError, SyncPhase, SyncProgress, SyncReport};

/// Lines per channel batch are cut at about this many bytes (also the staging commit size).
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the downloader and the apply.
const CHANNEL_BATCHES: usize = 8;

/// Syncs the cache from the server: a full export the first time (or when the set of Groups
/// changed), an incremental one (`_since`) after; resumes an interrupted one. On success
/// the cache holds the new state and the report says what changed; on failure it holds the
/// previous state and the error is also recorded in the cache's sync state (except
/// [`SyncError::Cancelled`]). The staging store beside the cache is opened with its key.
pub fn sync_now(
    cache: &mut Cache,
    cfg: &SyncConfig,
    key: &KeyPair,
    progress: &mut dyn FnMut(SyncProgress),
    cancel: &AtomicBool,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let mut r = run(cache, cfg, key, progress, cancel);
    if matches!(r, Err(SyncError::Expired)) {
        // The server dropped the export we were resuming: once more from a new export.
        r = run(cache, cfg, key, progress, cancel);
    }
    match &mut r {
        Ok(rep) => rep.elapsed_ms = started.elapsed().as_millis() as u64,
        Err(SyncError::Cancelled | SyncError::FullSyncNeeded) => {}
        Err(e) => {
            let _ = cache.record_sync_error(&e.to_string());
        }
    }
    r
}

fn run(
    cache: &mut Cache,
    cfg: &SyncConfig,
    key: &KeyPair,
    progress: &mut dyn FnMut(SyncProgress),
    cancel: &AtomicBool,
) -> Result<SyncReport, SyncError> {
    let http = Http::new(cfg, key, cancel)?;
    let fhir = cfg.fhir_base();
    let mut report_progress = |phase, server_progress: Option<String>| {
        progress(SyncProgress {
            phase,
            resources: 0,
            bytes: 0,
            total_resources: None,
            server_progress,
        })
    };
    report_progress(SyncPhase::Connecting, None);
    discover(&http, cfg, &fhir)?;
    let groups = match &cfg.groups {
        Some(g) if !g.is_empty() => g.clone(),
        _ => list_groups(&http, &fhir)?,
    };
    // Recorded once the server accepted this client, so a mistyped setting that fails
    // does not forget where the last sync of the right one ended (a full sync again).
    cache.set_sync_server(&cfg.base_url, &cfg.client_id)?;
    if groups.is_empty() {
        return Err(SyncError::Forbidden(Some(
            "no Group is granted to this client".into(),
        )));
    }
    let state = cache.sync_state()?;
    let synced: std::collections::HashMap<&str, &str> = state
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.transaction_time.as_str()))
        .collect();
    let full =
        groups.iter().any(|g| !synced.contains_key(g.as_str())) || synced.len() != groups.len();
    if full && !cfg.allow_full {
        return Err(SyncError::FullSyncNeeded);
    }
    let wanted: Vec<(String, Option<String>)> = groups
        .iter()
        .map(|g| {
            let since = if full {
                None
            } else {
                synced.get(g.as_str()).map(|s| s.to_string())
            };
            (g.clone(), since)
        })
        .collect();

    let mut stage = SyncStage::open_beside(cache)?;
    let staged = stage.staged()?;
    let resumable = staged.as_ref().is_some_and(|s| {
        s.server_url == cfg.base_url
            && s.client_id == cfg.client_id
            && s.full == full
            && s.exports.len() == wanted.len()
            && s.exports
                .iter()
                .zip(&wanted)
                .all(|(e, (g, since))| &e.group_id == g && &e.since == since)
    });
    if !resumable {
        if let Some(old) = &staged {
            // Stale (already applied, or another plan): tell the server it may drop it.
            for e in &old.exports {
                if let Some(u) = &e.status_url {
                    let _ = http.send(&Method::Delete, u, &[], true);
                }
            }
        }
        stage.begin(&cfg.base_url, &cfg.client_id, full, &wanted)?;
    }
    let resumed = resumable
        && staged
            .as_ref()
            .is_some_and(|s| s.exports.iter().any(|e| e.status_url.is_some()));

    // Every export kicked off and complete (manifest staged).
    let mut plan = stage.staged()?.expect("begun");
    for i in 0..plan.exports.len() {
        let mut rounds = 0;
        while plan.exports[i].manifest.is_none() {
            rounds += 1;
            if rounds > 3 {
                return Err(SyncError::Protocol(
                    "the server lost the export three times".into(),
                ));
            }
            let ex = &plan.exports[i];
            // An empty status URL marks an export the server lost: kick off anew.
            let status_url = match ex.status_url.as_deref().filter(|u| !u.is_empty()) {
                Some(u) => u.to_owned(),
                None => {
                    let u = kick_off(&http, &fhir, &ex.group_id, ex.since.as_deref())?;
                    stage.set_status_url(&ex.group_id, &u)?;
                    testhook::point("kicked_off");
                    u
                }
            };
            match poll(&http, &status_url, &mut report_progress) {
                Ok(Some((text, m))) => {
                    let files = manifest_files(cfg, &status_url, &m)?;
                    stage.set_manifest(&ex.group_id, &text, &files)?;
                    testhook::point("manifest");
                }
                Ok(None) => {
                    // Gone (404/410): a new export for this Group.
                    stage.set_status_url(&ex.group_id, "")?;
                }
                Err(e) => {
                    // The export failed on the server: the next run starts anew. A lost
                    // connection, a refused token or a cancel keeps it for the next run.
                    if matches!(e, SyncError::Server { .. } | SyncError::Protocol(_)) {
                        stage.begin(&cfg.base_url, &cfg.client_id, full, &wanted)?;
                    }
                    return Err(e);
                }
            }
            plan = stage.staged()?.expect("begun");
        }
    }

    let manifests: Vec<Manifest> = plan
        .exports
        .iter()
        .map(|e| {
            serde_json::from_str(e.manifest.as_deref().unwrap_or(""))
                .map_err(|_| SyncError::Protocol("a staged manifest does not parse".into()))
        })
        .collect::<Result<_, _>>()?;
    let total_resources: Option<u64> = plan
        .exports
        .iter()
        .flat_map(|e| e.files.iter().filter(|f| f.kind == SyncFileKind::Output))
        .map(|f| f.count)
        .sum();
    let bytes_reused: u64 = plan
        .exports
        .iter()
        .flat_map(|e| e.files.iter())
        .map(|f| f.bytes)
        .sum();
    let apply = SyncApply {
        full,
        groups: plan
            .exports
            .iter()
            .zip(&manifests)
            .map(|(e, m)| (e.group_id.clone(), m.transaction_time.clone()))
            .collect(),
        report: Some(
            serde_json::json!({"groups": groups, "full": full, "resumed": resumed}).to_string(),
        ),
    };

    // Download (thread) and apply (here) overlap.
    let bytes = AtomicU64::new(0);
    let dl_done = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (applied, dl, stage) = std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Batch>(CHANNEL_BATCHES);
        let (http, plan, manifests, bytes, errors, dl_done) =
            (&http, &plan, &manifests, &bytes, &errors, &dl_done);
        let handle = s.spawn(move || {
            let r = download_all(http, &mut stage, plan, manifests, &tx, bytes, errors);
            dl_done.store(true, Ordering::Relaxed);
            if let Err(e) = &r {
                let _ = tx.send(Err(CacheError::Import(format!("download stopped: {e}"))));
            }
            (r, stage)
        });
        let applied = cache.apply_sync(&apply, LineIter::new(rx), |p| {
            progress(SyncProgress {
                phase: if dl_done.load(Ordering::Relaxed) {
                    SyncPhase::Applying
                } else {
                    SyncPhase::Downloading
                },
                resources: p.resources,
                bytes: bytes.load(Ordering::Relaxed),
                total_resources,
                server_progress: None,
            })
        });
        let (dl, stage) = handle.join().expect("download thread");
        (applied, dl, stage)
    });
    let mut stage = stage;
    let applied = match (applied, dl) {
        (Ok(a), Ok(())) => a,
        (_, Err(SyncError::Expired)) => {
            stage.begin(&cfg.base_url, &cfg.client_id, full, &wanted)?;
            return Err(SyncError::Expired);
        }
        (Err(_), Err(e)) => return Err(e),
        (Err(e), Ok(())) => return Err(e.into()),
        (Ok(_), Err(e)) => return Err(e),
    };
    testhook::point("applied");

    // Applied: the server may delete the files; the stage is done.
    for e in &plan.exports {
        if let Some(u) = e.status_url.as_deref().filter(|u| !u.is_empty()) {
            let _ = http.send(&Method::Delete, u, &[], true);
        }
    }
    testhook::point("deleted");
    stage.discard()?;
    let bytes = bytes.load(Ordering::Relaxed);
    progress(SyncProgress {
        phase: SyncPhase::Done,
        resources: applied.summary.resources,
        bytes,
        total_resources,
        server_progress: None,
    });
    Ok(SyncReport {
        groups,
        full,
        resumed,
        resources: applied.summary.resources,
        deleted: applied.deleted,
        bytes,
        bytes_reused,
        transaction_time: manifests.iter().map(|m| m.transaction_time.clone()).max(),
        changed_patients: applied.changed_patients,
        removed_patients: applied.removed_patients,
        errors: errors.into_inner().unwrap(),
        elapsed_ms: 0,
    })
}

/// The SMART configuration: finds the token endpoint.
pub(crate) fn discover(http: &Http<'_>, cfg: &SyncConfig, fhir: &str) -> Result<(), SyncError> {
    let mut urls = vec![format!("{fhir}/.well-known/smart-configuration")];
    let origin = origin_of(fhir);
    let root = format!("{origin}/.well-known/smart-configuration");
    if root != urls[0] {
        urls.push(root);
    }
    let mut last = None;
    for u in &urls {
        let resp = http.send(&Method::Get, u, &[("Accept", "application/json")], false)?;
        let status = resp.status().as_u16();
        let body = read_small(resp)?;
        if status == 200 {
            let sc: protocol::smart::SmartConfiguration = serde_json::from_slice(&body)
                .map_err(|_| SyncError::Protocol("the smart-configuration is not valid".into()))?;
            let algs = &sc.token_endpoint_auth_signing_alg_values_supported;
            if !algs.is_empty() && !algs.iter().any(|a| a == "ES384") {
                return Err(SyncError::Protocol(
                    "the server does not accept ES384-signed client assertions".into(),
                ));
            }
            let token_url = resolve(u, &sc.token_endpoint);
            crate::http::check_url(cfg, &token_url)?;
            http.set_token_url(token_url);
            return Ok(());
        }
        last = Some(status_error(status, &body));
    }
    Err(last.unwrap_or_else(|| SyncError::Protocol("no smart-configuration".into())))
}

/// The ids of the Groups the server lets this client see (`GET {fhir}/Group`, paged).
fn list_groups(http: &Http<'_>, fhir: &str) -> Result<Vec<String>, SyncError> {
    let mut out = Vec::new();
    let mut next = Some(format!("{fhir}/Group"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 100 {
            break;
        }
        let resp = http.send(&Method::Get, &url, &[("Accept", FHIR_JSON)], true)?;
        let status = resp.status().as_u16();
        let body = read_small(resp)?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| SyncError::Protocol("the Group search result is not JSON".into()))?;
        if v["resourceType"] != "Bundle" {
            return Err(SyncError::Protocol(
                "the Group search result is not a Bundle".into(),
            ));
        }
        for e in v["entry"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let r = &e["resource"];
            if r["resourceType"] == "Group" {
                if let Some(id) = r["id"].as_str() {
                    if !out.iter().any(|x| x == id) {
                        out.push(id.to_owned());
                    }
                }
            }
        }
        next = v["link"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(|u| resolve(&url, u));
    }
    Ok(out)
}

/// Kicks off a Group export; returns the status URL.
fn kick_off(
    http: &Http<'_>,
    fhir: &str,
    group: &str,
    since: Option<&str>,
) -> Result<String, SyncError> {
    let url = format!("{fhir}/Group/{}/$export", pct(group));
    let req = ExportRequest {
        since: since.map(str::to_owned),
        ..Default::default()
    };
    let body = req.to_parameters().to_string();
    let headers = [
        ("Accept", FHIR_JSON),
        ("Prefer", protocol::bulk::PREFER_ASYNC),
    ];
    let mut resp = http.send(
        &Method::Post(body.as_bytes(), FHIR_JSON),
        &url,
        &headers,
        true,
    )?;
    if resp.status().as_u16() == 405 {
        let mut q = format!("_outputFormat={}", pct(protocol::bulk::NDJSON));
        if let Some(s) = since {
            q.push_str(&format!("&_since={}", pct(s)));
        }
        resp = http.send(&Method::Get, &format!("{url}?{q}"), &headers, true)?;
    }
    let status = resp.status().as_u16();
    let location = header(&resp, "content-location");
    let body = read_small(resp)?;
    match (status, location) {
        (202, Some(loc)) => Ok(resolve(&url, &loc)),
        (202, None) => Err(SyncError::Protocol(
            "the export was accepted without a Content-Location".into(),
        )),
        _ => Err(status_error(status, &body)),
    }
}

/// Polls a status URL until the manifest is ready (`Some`), or the export is gone (`None`).
fn poll(
    http: &Http<'_>,
    status_url: &str,
    progress: &mut dyn FnMut(SyncPhase, Option<String>),
) -> Result<Option<(String, Manifest)>, SyncError> {
    let mut polls = 0u32;
    let mut broken = 0u32;
    loop {
        let resp = http.send(
            &Method::Get,
            status_url,
            &[("Accept", "application/json")],
            true,
        )?;
        let status = resp.status().as_u16();
        match status {
            202 => {
                polls += 1;
                progress(SyncPhase::Exporting, header(&resp, "x-progress"));
                let ra =
                    header(&resp, "retry-after").and_then(|v| protocol::bulk::retry_after_secs(&v));
                // Without Retry-After: 0.5 s, growing to 5 s.
                let wait = match ra {
                    Some(_) => http.backoff(0, ra),
                    None => Duration::from_millis((250u64 << polls.min(5)).min(5000)),
                };
                let _ = read_small(resp);
                http.sleep(wait)?;
            }
            200 => {
                // A manifest cut off mid-body: ask again (a GET).
                let body = match read_small(resp) {
                    Ok(b) => b,
                    Err(e) if e.is_transient() && broken < http.max_retries() => {
                        broken += 1;
                        http.sleep(http.backoff(broken, None))?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let text = String::from_utf8(body)
                    .map_err(|_| SyncError::Protocol("the manifest is not UTF-8".into()))?;
                let m: Manifest = serde_json::from_str(&text)
                    .map_err(|_| SyncError::Protocol("the manifest is not valid".into()))?;
                return Ok(Some((text, m)));
            }
            404 | 410 => return Ok(None),
            _ => {
                let body = read_small(resp)?;
                return Err(status_error(status, &body));
            }
        }
    }
}

/// The files of a manifest in apply order (output, deleted, error), validated.
fn manifest_files(
    cfg: &SyncConfig,
    status_url: &str,
    m: &Manifest,
) -> Result<Vec<StagedFile>, SyncError> {
    if m.transaction_time.trim().is_empty() {
        return Err(SyncError::Protocol(
            "the manifest has no transactionTime".into(),
        ));
    }
    let mut files = Vec::new();
    for (kind, list) in [
        (SyncFileKind::Output, &m.output),
        (SyncFileKind::Deleted, &m.deleted),
        (SyncFileKind::Error, &m.error),
    ] {
        for f in list {
            if f.resource_type.is_empty() && kind == SyncFileKind::Output {
                return Err(SyncError::Protocol("a manifest file has no type".into()));
            }
            let url = resolve(status_url, &f.url);
            crate::http::check_url(cfg, &url)?;
            files.push(StagedFile::new(kind, &f.resource_type, &url, f.count));
        }
    }
    Ok(files)
}

type Batch = Result<Vec<SyncLine>, CacheError>;

/// Flattens the channel's batches into lines for the apply.
struct LineIter {
    rx: Receiver<Batch>,
    cur: std::vec::IntoIter<SyncLine>,
    failed: bool,
}

impl LineIter {
    fn new(rx: Receiver<Batch>) -> LineIter {
        LineIter {
            rx,
            cur: Vec::new().into_iter(),
            failed: false,
        }
    }
}

impl Iterator for LineIter {
    type Item = Result<SyncLine, CacheError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(l) = self.cur.next() {
                return Some(Ok(l));
            }
            if self.failed {
                return None;
            }
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    testhook::point("fed");
                    self.cur = v.into_iter();
                }
                Ok(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Err(_) => {
                    // Every line delivered: the apply commits next.
                    testhook::point("lines_done");
                    return None;
                }
            }
        }
    }
}

/// Cuts staged or downloaded bytes (whole lines) into [`SyncLine`]s.
struct Lines {
    group: usize,
    kind: SyncFileKind,
    file: Arc<str>,
    line_no: u64,
}

impl Lines {
    fn cut(&mut self, data: &[u8]) -> Result<Vec<SyncLine>, SyncError> {
        let mut out = Vec::new();
        for raw in data.split(|&b| b == b'\n') {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            self.line_no += 1;
            let text = std::str::from_utf8(raw).map_err(|_| {
                SyncError::Protocol(format!("{}: line {} is not UTF-8", self.file, self.line_no))
            })?;
            out.push(SyncLine {
                group: self.group,
                kind: self.kind,
                file: self.file.clone(),
                line_no: self.line_no,
                text: text.to_owned(),
            });
        }
        Ok(out)
    }
}

/// Non-blank lines in whole-line bytes.
fn count_lines(data: &[u8]) -> u64 {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count() as u64
}

/// Every file of every export, in order: staged bytes first, then the rest downloaded (and
/// staged); lines of output and deleted files go to the apply, error files are reported.
fn download_all(
    http: &Http<'_>,
    stage: &mut SyncStage,
    plan: &StagedSync,
    manifests: &[Manifest],
    tx: &SyncSender<Batch>,
    bytes: &AtomicU64,
    errors: &Mutex<Vec<String>>,
) -> Result<(), SyncError> {
    let stopped = || SyncError::Cancelled;
    for (gi, (ex, m)) in plan.exports.iter().zip(manifests).enumerate() {
        for (fi, f) in ex.files.iter().enumerate() {
            let kind_name = match f.kind {
                SyncFileKind::Output => "output",
                SyncFileKind::Deleted => "deleted",
                SyncFileKind::Error => "error",
            };
            let mut lines = Lines {
                group: gi,
                kind: f.kind,
                file: Arc::from(format!(
                    "Group {} {kind_name} file {} ({})",
                    ex.group_id,
                    fi + 1,
                    f.resource_type
                )),
                line_no: 0,
            };
            let mut deliver = |data: &[u8]| -> Result<(), SyncError> {
                let batch = lines.cut(data)?;
                if f.kind == SyncFileKind::Error {
                    let mut errs = errors.lock().unwrap();
                    for l in batch {
                        errs.push(
                            protocol::outcome_diagnostics(l.text.as_bytes())
                                .unwrap_or_else(|| "an error without diagnostics".into()),
                        );
                    }
                    Ok(())
                } else if batch.is_empty() {
                    Ok(())
                } else {
                    tx.send(Ok(batch)).map_err(|_| stopped())
                }
            };
            let mut replay_err = None;
            stage.read_file(&ex.group_id, fi, |chunk| {
                deliver(chunk).map_err(|e| {
                    replay_err = Some(e);
                    CacheError::Import("replay stopped".into())
                })
            })?;
            if let Some(e) = replay_err {
                return Err(e);
            }
            if !f.complete {
                fetch_file(
                    http,
                    stage,
                    &ex.group_id,
                    fi,
                    f,
                    m.requires_access_token,
                    bytes,
                    &mut deliver,
                )?;
            }
        }
    }
    Ok(())
}

/// Downloads the rest of one file from `f.bytes` on (`Range`), resuming after broken or
/// truncated responses; stages whole lines and delivers them.
#[allow(clippy::too_many_arguments)]
fn fetch_file(
    http: &Http<'_>,
    stage: &mut SyncStage,
    group: &str,
    fi: usize,
    f: &StagedFile,
    auth: bool,
    bytes: &AtomicU64,
    deliver: &mut dyn FnMut(&[u8]) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    let mut offset = f.bytes;
    let mut lines = f.lines;
    let mut failures = 0u32;
    loop {
        http.check_cancel()?;
        let range = format!("bytes={offset}-");
        let mut headers = vec![("Accept", protocol::bulk::NDJSON)];
        if offset > 0 {
            headers.push(("Range", range.as_str()));
        }
        let resp = http.send(&Method::Get, &f.url, &headers, auth)?;
        let status = resp.status().as_u16();
        let mut skip = match status {
            200 => offset,
            206 => {
                let start = header(&resp, "content-range")
                    .and_then(|v| {
                        v.trim()
                            .strip_prefix("bytes ")
                            .and_then(|r| r.split('-').next())
                            .and_then(|s| s.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(offset);
                if start != offset {
                    return Err(SyncError::Protocol(
                        "a partial download started at another offset than asked".into(),
                    ));
                }
                0
            }
            416 if offset > 0 => {
                stage.append(group, fi, &[], 0, true)?;
                return Ok(());
            }
            404 | 410 => return Err(SyncError::Expired),
            _ => {
                let body = read_small(resp)?;
                return Err(status_error(status, &body));
            }
        };
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let mut pending: Vec<u8> = Vec::new();
        let mut whole: Vec<u8> = Vec::new();
        let mut progressed = false;
        let mut flush = |whole: &mut Vec<u8>,
                         offset: &mut u64,
                         lines: &mut u64,
                         complete: bool|
         -> Result<(), SyncError> {
            if whole.is_empty() && !complete {
                return Ok(());
            }
            let n = count_lines(whole);
            stage.append(group, fi, whole, n, complete)?;
            testhook::point("staged");
            *offset += whole.len() as u64;
            *lines += n;
            deliver(whole)?;
            whole.clear();
            Ok(())
        };
        let outcome: Result<(), SyncError> = loop {
            if let Err(e) = http.check_cancel() {
                break Err(e);
            }
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(mut n) => {
                    let mut data = &buf[..n];
                    if skip > 0 {
                        let k = (skip as usize).min(n);
                        skip -= k as u64;
                        data = &data[k..];
                        n -= k;
                        if n == 0 {
                            continue;
                        }
                    }
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    match memrchr_nl(data) {
                        Some(i) => {
                            whole.append(&mut pending);
                            whole.extend_from_slice(&data[..=i]);
                            pending.extend_from_slice(&data[i + 1..]);
                            progressed = true;
                        }
                        None => pending.extend_from_slice(data),
                    }
                    if whole.len() >= testhook::batch_bytes(BATCH_BYTES) {
                        flush(&mut whole, &mut offset, &mut lines, false)?;
                    }
                }
                Err(e) => {
                    break Err(crate::http::classify(ureq::Error::Io(e)));
                }
            }
        };
        // Whatever arrived as whole lines is kept.
        flush(&mut whole, &mut offset, &mut lines, false)?;
        match outcome {
            Ok(()) if skip > 0 => {
                // The server sent less than we already have.
                return Err(SyncError::Protocol(
                    "a file is shorter than what was already downloaded".into(),
                ));
            }
            Ok(()) => {
                let last_line_ok = pending.iter().all(|b| b.is_ascii_whitespace())
                    || serde_json::from_slice::<serde::de::IgnoredAny>(&pending).is_ok();
                let short = f.count.is_some_and(|c| {
                    lines + u64::from(!pending.iter().all(|b| b.is_ascii_whitespace())) < c
                });
                if last_line_ok && !short {
                    // Complete. A last line without its newline is staged with one.
                    let mut tail = std::mem::take(&mut pending);
                    if !tail.iter().all(|b| b.is_ascii_whitespace()) {
                        tail.push(b'\n');
                        whole = tail;
                    }
                    flush(&mut whole, &mut offset, &mut lines, true)?;
                    return Ok(());
                }
                // Truncated (mid-line, or fewer lines than the manifest's count): resume.
            }
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e),
        }
        failures = if progressed { 1 } else { failures + 1 };
        if failures > http_retries(http) {
            return Err(SyncError::Transient(
                "a file download kept breaking off".into(),
            ));
        }
        http.sleep(http.backoff(failures, None))?;
    }
}

fn http_retries(http: &Http<'_>) -> u32 {
    http.max_retries()
}

fn memrchr_nl(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}

/// `scheme://host[:port]` of a URL.
pub(crate) fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or("");
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// `reference` resolved against `base` (absolute, or `/path` on base's origin, or relative
/// to base's directory).
fn resolve(base: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_owned();
    }
    if reference.starts_with('/') {
        return format!("{}{reference}", origin_of(base));
    }
    let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
    format!("{dir}/{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve() {
        assert_eq!(
            resolve("https://h:1/fhir/Group/x/$export", "https://o/s/1"),
            "https://o/s/1"
        );
        assert_eq!(
            resolve("https://h:1/fhir/Group/x/$export", "/status/9"),
            "https://h:1/status/9"
        );
        assert_eq!(resolve("https://h/a/b", "c"), "https://h/a/c");
        assert_eq!(origin_of("https://h:1/fhir"), "https://h:1");
    }

    #[test]
    fn lines_are_cut_and_counted() {
        let mut l = Lines {
            group: 0,
            kind: SyncFileKind::Output,
            file: Arc::from("f"),
            line_no: 0,
        };
        let v = l.cut(b"{\"a\":1}\r\n\n  \n{\"b\":2}\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].line_no, v[1].text.as_str()), (2, "{\"b\":2}"));
        assert_eq!(count_lines(b"{}\n\n{}\n"), 2);
    }
}

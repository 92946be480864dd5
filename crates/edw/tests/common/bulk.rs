//! Bulk Data calls on a running `phm-edw serve` ([`super::smart::Server`]): any method
//! with a bearer token and headers, the kick-off headers, polling a job to its end.

use super::smart::Server;
use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn call(
    srv: &Server,
    method: &str,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        format!("{}{url}", srv.base)
    };
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("Authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = match body {
        Some(s) => srv.agent.run(b.body(s.to_string()).unwrap()),
        None => srv.agent.run(b.body(()).unwrap()),
    };
    let mut r = r.expect("HTTP request failed");
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r.body_mut().read_to_vec().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

pub const KICK: [(&str, &str); 2] = [
    ("Accept", "application/fhir+json"),
    ("Prefer", "respond-async"),
];

/// Polls until the job is done; returns (final response, polls answered 202).
pub fn poll(srv: &Server, url: &str, token: &str) -> (Resp, Vec<Resp>) {
    let mut waiting = Vec::new();
    for _ in 0..600 {
        let r = call(srv, "GET", url, token, &[], None);
        if r.status != 202 {
            return (r, waiting);
        }
        waiting.push(r);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("export did not finish");
}

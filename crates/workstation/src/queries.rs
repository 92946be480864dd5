//! Maps the screen's requests onto cache queries and the answers back.

use access::{Action, Outcome};
use cache::{Cache, CacheError, EventKind, PanelSort, SortDir};

use crate::dto::*;
use crate::WsError;

/// Rows per panel request; the UI asks page by page as the list scrolls.
const DEFAULT_PAGE: u32 = 200;

pub fn facets(c: &Cache) -> Result<Facets, WsError> {
    let providers = c
        .panel_providers()?
        .into_iter()
        .map(|(id, name, _count)| Provider {
            name: name.unwrap_or_else(|| id.clone()),
            id,
        })
        .collect();
    let conditions = c
        .panel_conditions()?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    Ok(Facets {
        providers,
        conditions,
    })
}

fn blank_to_none(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub fn panel(
    c: &Cache,
    q: &PanelQuery,
    scope: Option<&std::collections::HashSet<String>>,
) -> Result<PanelPage, WsError> {
    if let (Some(lo), Some(hi)) = (q.age_min, q.age_max) {
        if lo > hi {
            return Err(WsError::invalid(
                "The minimum age is above the maximum age.",
            ));
        }
    }
    let query = cache::PanelQuery {
        name: blank_to_none(&q.name),
        min_age: q.age_min,
        max_age: q.age_max,
        sex: blank_to_none(&q.sex),
        pcp_id: blank_to_none(&q.provider),
        condition: blank_to_none(&q.condition),
        sort: match q.sort {
            SortKey::Name => PanelSort::Name,
            SortKey::Age => PanelSort::Age,
            SortKey::Sex => PanelSort::Sex,
            SortKey::Provider => PanelSort::Pcp,
            SortKey::LastVisit => PanelSort::LastVisit,
        },
        dir: if q.descending {
            SortDir::Desc
        } else {
            SortDir::Asc
        },
        offset: q.offset,
        limit: if q.limit == 0 {
            DEFAULT_PAGE
        } else {
            q.limit.min(1000)
        },
        as_of: None,
    };
    let page = c.panel_in(&query, scope)?;
    Ok(PanelPage {
        rows: page.rows.into_iter().map(panel_row).collect(),
        total: page.total,
    })
}

fn panel_row(r: cache::PanelRow) -> PanelRow {
    PanelRow {
        id: r.patient_id,
        name: r.name,
        age: r.age,
        sex: r.sex.unwrap_or_else(|| "unknown".into()),
        provider: r.pcp_name,
        conditions: split_conditions(&r.conditions),
        last_visit: r.last_visit.map(|d| date_part(&d)),
    }
}

fn split_conditions(s: &str) -> Vec<String> {
    s.split("; ")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn date_part(d: &str) -> String {
    d.get(..10).unwrap_or(d).to_owned()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn with_unit(v: f64, unit: &Option<String>) -> String {
    match unit.as_deref() {
        Some(u) if !u.is_empty() => format!("{} {}", number(v), u),
        _ => number(v),
    }
}

pub fn timeline(c: &Cache, patient_id: &str) -> Result<Timeline, WsError> {
    let summary = c
        .patient_summary(patient_id)?
        .ok_or_else(|| WsError::not_found("patient"))?;
    let t = c
        .timeline(patient_id, &[])?
        .ok_or_else(|| WsError::not_found("patient"))?;
    let mut events: Vec<TimelineEvent> = t
        .events
        .into_iter()
        .map(|e| {
            let value = match (e.kind, e.value, e.value2) {
                (EventKind::Observation, Some(sys), Some(dia)) => Some(format!(
                    "{}/{} {}",
                    number(sys),
                    number(dia),
                    e.unit.clone().unwrap_or_default()
                )),
                (_, Some(v), _) => Some(with_unit(v, &e.unit)),
                _ => e.value_text.clone(),
            };
            TimelineEvent {
                resource_id: e.resource_id,
                date: e.date.map(|d| date_part(&d)),
                kind: e.kind.id().into(),
                display: e
                    .display
                    .or(e.code.clone())
                    .unwrap_or_else(|| "(no description)".into()),
                code: e.code,
                value: value.map(|v| v.trim().to_owned()),
                status: e.status,
            }
        })
        .collect();
    // Newest first: what a clinician reads first.
    events.reverse();
    let row = summary.row;
    Ok(Timeline {
        patient_id: row.patient_id,
        name: row.name,
        birth_date: row.birth_date,
        age: row.age,
        sex: row.sex.unwrap_or_else(|| "unknown".into()),
        provider: row.pcp_name,
        latest_blood_pressure: t.latest_bp.map(|bp| Vital {
            date: bp.date.map(|d| date_part(&d)),
            value: format!(
                "{}/{} {}",
                number(bp.systolic),
                number(bp.diastolic),
                bp.unit.unwrap_or_default()
            )
            .trim()
            .to_owned(),
        }),
        latest_hba1c: t.latest_hba1c.map(|m| Vital {
            date: m.date.map(|d| date_part(&d)),
            value: with_unit(m.value, &m.unit),
        }),
        latest_bmi: t.latest_bmi.map(|m| Vital {
            date: m.date.map(|d| date_part(&d)),
            value: with_unit(m.value, &m.unit),
        }),
        events,
    })
}

pub fn audit_list(c: &Cache, f: &AuditFilter) -> Result<Vec<AuditRow>, WsError> {
    let action = match blank_to_none(&f.action) {
        Some(a) => Some(Action::from_id(&a).ok_or_else(|| WsError::invalid("Unknown action."))?),
        None => None,
    };
    let outcome = match blank_to_none(&f.outcome) {
        Some(o) => Some(Outcome::from_id(&o).ok_or_else(|| WsError::invalid("Unknown outcome."))?),
        None => None,
    };
    let filter = cache::AuditFilter {
        user: blank_to_none(&f.user),
        patient_id: blank_to_none(&f.patient_id),
        action,
        outcome,
        from: blank_to_none(&f.from),
        to: blank_to_none(&f.to),
        limit: f.limit,
        offset: 0,
    };
    Ok(c.audit_list(&filter)?
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            at: r.at,
            user: r.user,
            role: r.role.map(|r| r.id().to_owned()).unwrap_or_default(),
            purpose: r.purpose.map(|p| p.code().to_owned()).unwrap_or_default(),
            action: r.action.id().into(),
            patients: r.patient_ids,
            query: r.query,
            outcome: r.outcome.id().into(),
            detail: r.detail,
            hash: r.hash,
        })
        .collect())
}

pub fn audit_verify(c: &Cache) -> Result<AuditVerification, WsError> {
    match c.audit_verify_anchored(crate::sync::audit_anchor(c)) {
        Ok(n) => Ok(AuditVerification {
            ok: true,
            checked: n,
            broken_at: None,
            reason: None,
        }),
        Err(CacheError::AuditChain(b)) => Ok(AuditVerification {
            ok: false,
            checked: (b.seq - 1).max(0) as u64,
            broken_at: Some(b.seq),
            reason: Some(b.reason.to_string()),
        }),
        Err(e) => Err(e.into()),
    }
}

//! First launch without a server: the demo accounts and a generated demo panel,
//! written straight into the encrypted cache (no plaintext temp files).

use cache::Cache;

use crate::dto::StartupStatus;
use crate::{Config, WsError};

/// Demo mode at start: the demo accounts, the generated panel in an empty cache, and the
/// accounts' links to its panels.
#[cfg(feature = "demo")]
pub fn prepare(
    cache: &mut Cache,
    config: &Config,
    progress: &dyn Fn(StartupStatus),
) -> Result<(), WsError> {
    seed_accounts(cache)?;
    if cache.patient_count()? == 0 && config.demo_patients > 0 {
        generate_panel(cache, config.demo_patients, config.demo_seed, progress)?;
    }
    link_accounts(cache)
}

/// A build without the `demo` feature links no synthetic generator and has no demo mode.
#[cfg(not(feature = "demo"))]
pub fn prepare(
    _cache: &mut Cache,
    _config: &Config,
    _progress: &dyn Fn(StartupStatus),
) -> Result<(), WsError> {
    Err(WsError::new(
        "demo",
        "This build of PHM Workstation has no demo mode (it was built without the demo feature).",
    ))
}

/// Creates the demo accounts that do not exist yet.
#[cfg(feature = "demo")]
fn seed_accounts(cache: &Cache) -> Result<(), WsError> {
    use crate::{demo_passphrase, DEMO_ACCOUNTS};
    for (username, display, role) in DEMO_ACCOUNTS {
        if cache.account(username)?.is_none() {
            cache.create_account(username, display, role, &demo_passphrase(username))?;
        }
    }
    Ok(())
}

/// Generates `patients` synthetic patients into the cache in one transaction.
#[cfg(feature = "demo")]
fn generate_panel(
    cache: &mut Cache,
    patients: u64,
    seed: u64,
    progress: &dyn Fn(StartupStatus),
) -> Result<(), WsError> {
    let mut config = synth::SynthConfig::new(patients, seed);
    // A demo reads better with a handful of providers than with one huge panel.
    config.providers = (patients / 200).clamp(1, 50) as u32;
    let generator = synth::Generator::new(config).map_err(|e| {
        WsError::new(
            "demo",
            format!("The demo panel could not be generated: {e}."),
        )
    })?;
    let done = std::cell::Cell::new(0u64);
    let resources = generator
        .reference_resources()
        .into_iter()
        .chain((0..patients).flat_map(|i| {
            done.set(i + 1);
            generator.patient(i)
        }));
    progress(StartupStatus::generating(0, patients));
    cache.import_resources(resources, |_| {
        progress(StartupStatus::generating(done.get(), patients))
    })?;
    tracing::info!(patients, "demo panel generated");
    Ok(())
}

/// Links the demo care manager to the care teams of the first panels (about half, at most
/// three) and the demo clinician to the first panel's practitioner, unless they are linked
/// to panels that exist (after a sync replaced the panels, stale links are redone).
pub fn link_accounts(cache: &Cache) -> Result<(), WsError> {
    let groups = cache.groups()?;
    let mut with_pcp: Vec<_> = groups
        .iter()
        .filter(|g| g.practitioner_id.is_some() && g.size > 0)
        .collect();
    with_pcp.sort_by(|a, b| a.id.cmp(&b.id));
    let Some(first) = with_pcp.first() else {
        return Ok(());
    };
    let live = |p: &Option<String>, g: &[String]| {
        (p.is_some() || !g.is_empty())
            && g.iter().all(|id| with_pcp.iter().any(|x| &x.id == id))
            && p.as_ref().is_none_or(|p| {
                with_pcp
                    .iter()
                    .any(|x| x.practitioner_id.as_ref() == Some(p))
            })
    };
    let (p, g) = cache.account_links("caremanager")?;
    if cache.account("caremanager")?.is_some() && !live(&p, &g) {
        // About half the panels, at most three: a care manager sees part of the practice.
        let n = with_pcp.len().div_ceil(2).clamp(1, 3);
        let teams: Vec<String> = with_pcp.iter().take(n).map(|g| g.id.clone()).collect();
        cache.set_account_links("caremanager", None, &teams)?;
    }
    let (p, g) = cache.account_links("clinician")?;
    if cache.account("clinician")?.is_some() && !live(&p, &g) {
        cache.set_account_links("clinician", first.practitioner_id.as_deref(), &[])?;
    }
    Ok(())
}

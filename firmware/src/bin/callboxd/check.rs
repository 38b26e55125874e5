//! `check-config`: load a site config (and a scenario against its lines)
//! and report every problem at once.
//!
//! [`load`] is also how `run` reads its config, so what `check-config`
//! accepts is exactly what the daemon starts with.

use std::path::Path;

use callbox_firmware::config::SiteConfig;
use callbox_hal::diag::Diagnostics;
use callbox_hal::sim::Scenario;

use crate::Failure;

/// The site config and, if asked for, the scenario checked against its
/// lines; every problem of both in one [`Failure::Config`].
pub fn load(
    config: &Path,
    scenario: Option<&Path>,
) -> Result<(SiteConfig, Option<Scenario>), Failure> {
    let mut problems = Vec::new();
    let site = match SiteConfig::load(config) {
        Ok(s) => Some(s),
        Err(d) => {
            problems.extend(d.0);
            None
        }
    };
    let scenario = match (scenario, &site) {
        (Some(path), Some(site)) => match Scenario::load(path, &site.lines) {
            Ok(s) => Some(s),
            Err(d) => {
                problems.extend(d.0);
                None
            }
        },
        _ => None,
    };
    match site {
        Some(site) if problems.is_empty() => {
            if scenario.is_some() && site.backend != "sim" {
                return Err(Failure::Other(anyhow::anyhow!(
                    "--scenario plays on the sim backend; {} uses `{}`",
                    config.display(),
                    site.backend
                )));
            }
            Ok((site, scenario))
        }
        _ => Err(Failure::Config(Diagnostics(problems))),
    }
}

pub fn check_config(config: &Path, scenario: Option<&Path>) -> Result<(), Failure> {
    let (site, sc) = load(config, scenario)?;
    println!(
        "{}: ok (site `{}`, {} line(s), backend `{}`)",
        config.display(),
        site.site_id,
        site.lines.len(),
        site.backend
    );
    if let (Some(path), Some(sc)) = (scenario, sc) {
        println!(
            "{}: ok ({} call(s), {} agent(s))",
            path.display(),
            sc.arrivals.len(),
            sc.agents.len()
        );
    }
    Ok(())
}

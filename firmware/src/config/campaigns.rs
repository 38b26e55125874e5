//! Campaigns pushed from headquarters, checked against the site config in
//! force: the same checks as a `[campaign.NAME]` of the config, with
//! errors at `campaign NAME:LINE:COL` in the pushed definition.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use callbox_hal::LineKind;
use callbox_hal::diag::TomlSource;

use super::SiteConfig;
use crate::calls::campaign::CampaignCfg;
use crate::calls::campaign::config::{RawCampaign, Site, check, starts};

impl SiteConfig {
    /// Campaign `name` as `definition` (its table's keys, TOML) gives it,
    /// dialling the list at `list`; the errors, one per line, each
    /// `campaign NAME:LINE:COL: message`.
    pub fn check_pushed(
        &self,
        name: &str,
        definition: &str,
        list: &Path,
    ) -> Result<Arc<CampaignCfg>, String> {
        let src = TomlSource::new(
            Path::new(&format!("campaign {name}")),
            definition.to_string(),
        );
        let raw: RawCampaign = src.parse().map_err(|d| d.to_string())?;
        let prefix = format!("campaign.{name}");
        let here = |path: &str| {
            path.strip_prefix(&prefix)
                .map(|p| p.trim_start_matches('.').to_string())
                .unwrap_or_else(|| path.to_string())
        };
        let mut errs = Vec::new();
        if self.campaigns.list.iter().any(|c| c.name == name) {
            errs.push(src.at_path("", format!("the site config has a campaign `{name}`: a pushed campaign needs a name of its own")));
        }
        let all = BTreeMap::from([(name.to_string(), raw)]);
        for (path, node) in starts(&all) {
            let known = self
                .ivr
                .as_ref()
                .is_some_and(|i| i.nodes.iter().any(|n| n.name == node));
            if !known {
                errs.push(src.at_path(
                    &here(&path),
                    format!("`{node}` is not a node of the box's IVR (`[ivr.node]`)"),
                ));
            }
        }
        let site = Site {
            ivr: self.ivr.as_ref(),
            ivr_written: self.ivr.is_some(),
            trunks: self
                .lines
                .iter()
                .filter(|l| l.kind == LineKind::Trunk)
                .map(|l| l.id.clone())
                .collect(),
            queues: self
                .acd
                .as_ref()
                .map(|a| a.queues.iter().map(|q| q.name.clone()).collect())
                .unwrap_or_default(),
            // Files a definition names (`dnc`) are the box's own, beside
            // its config.
            base: self.path.parent().unwrap_or(Path::new(".")),
            list: Some(list),
        };
        let checked = check(None, &all, &site);
        let reserve = self.campaigns.reserve_trunks;
        match checked {
            Ok(c) if errs.is_empty() => {
                let c = c
                    .list
                    .into_iter()
                    .next()
                    .ok_or_else(|| "the campaign did not check".to_string())?;
                if reserve >= c.trunks.len() {
                    return Err(src
                        .at_path(
                            "trunks",
                            format!(
                                "the site keeps {reserve} trunks idle for callers ([campaigns] reserve_trunks): none of the campaign's {} is left to dial on",
                                c.trunks.len()
                            ),
                        )
                        .to_string());
                }
                Ok(c)
            }
            Ok(_) => Err(join(&errs)),
            Err(list) => {
                errs.extend(list.iter().map(|(p, m)| src.at_path(&here(p), m.clone())));
                Err(join(&errs))
            }
        }
    }
}

fn join(errs: &[callbox_hal::diag::Diagnostic]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

//! Surroundings for the config checks' unit tests: a snippet of site
//! config is checked beside the lines, queues, prompt files and lookup
//! tables every test shares, so a test writes only the nodes it is
//! about.

use callbox_hal::{LineInfo, LineKind};
use serde::Deserialize;

use super::{Ivr, NodeKind, RawIvr, RawOutbound, check, default_system_prompts};
use crate::acd::config::RawAcd;

#[derive(Deserialize)]
struct Site {
    ivr: RawIvr,
    #[serde(default)]
    outbound: Vec<RawOutbound>,
    #[serde(default)]
    acd: Option<RawAcd>,
}

/// The `[acd]` a snippet gets unless it brings its own: queue `sales`
/// with music on hold and position announcements, `support` with
/// neither.
const ACD: &str = r#"
[agent.alice]
station = "desk-1"
[queue.sales]
members = { alice = 0 }
moh = "moh.wav"
announce_every = "30s"
[queue.support]
members = { alice = 0 }
"#;

/// Checks `toml`, a site config with `[ivr]` and perhaps `[[outbound]]`
/// and `[acd]`, beside:
/// - stations `desk-1`, `desk-2` and trunks `trunk-1`, `trunk-2`;
/// - [`ACD`] when the snippet has no `[acd]` (one that fails its own
///   check counts as failed, as in the site config);
/// - site prompts `hello.wav`, `bye.wav`, `moh.wav`, and `noise.wav`
///   which is not audio;
/// - lookup tables `products.csv`, `regions.csv` and `orders.csv`
///   (statuses `shipped` and `pending`);
/// - the system prompts of the source tree.
///
/// Errors read `key.path: message`, or `file:line:col: message` for a
/// lookup table; the temporary folder reads `DIR`, the system prompt
/// folder `SYSTEM`.
pub(crate) fn check_toml(toml: &str) -> Result<Ivr, Vec<String>> {
    let site: Site =
        toml::from_str(toml).unwrap_or_else(|e| panic!("test config does not parse: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    let system = default_system_prompts();
    for name in ["hello.wav", "bye.wav", "moh.wav"] {
        std::fs::copy(system.join("en/beep.wav"), prompts.join(name)).unwrap();
    }
    std::fs::write(prompts.join("noise.wav"), "not audio").unwrap();
    std::fs::write(dir.path().join("products.csv"), "code,region\n1234,north\n").unwrap();
    std::fs::write(dir.path().join("regions.csv"), "prefix,region\n010,north\n").unwrap();
    std::fs::write(
        dir.path().join("orders.csv"),
        "order,status\n1001,shipped\n1002,pending\n",
    )
    .unwrap();
    let lines = [
        ("desk-1", LineKind::Station),
        ("desk-2", LineKind::Station),
        ("trunk-1", LineKind::Trunk),
        ("trunk-2", LineKind::Trunk),
    ]
    .map(|(id, kind)| LineInfo {
        id: id.into(),
        kind,
    });
    let raw_acd = site.acd.unwrap_or_else(|| toml::from_str(ACD).unwrap());
    let acd = crate::acd::config::check(&raw_acd, &lines).ok();
    let tidy = |s: String| {
        s.replace(&dir.path().display().to_string(), "DIR")
            .replace(&system.display().to_string(), "SYSTEM")
    };
    check(
        &site.ivr,
        &super::Starts {
            outbound: &site.outbound,
            access: Vec::new(),
            rooms: Vec::new(),
            voicemail: false,
        },
        dir.path(),
        &prompts,
        &lines,
        acd.as_ref(),
        acd.is_none(),
    )
    .map_err(|(here, elsewhere)| {
        let here = here.into_iter().map(|(k, m)| format!("{k}: {m}"));
        let elsewhere = elsewhere
            .into_iter()
            .map(|d| format!("{}:{}:{}: {}", d.file.display(), d.line, d.col, d.message));
        here.chain(elsewhere).map(tidy).collect()
    })
}

/// A config with one node, `n`, where inbound calls start; `body` is
/// the node's table.
pub(crate) fn one_node(body: &str) -> String {
    format!("[ivr]\nstart = \"n\"\n[ivr.node.n]\n{body}")
}

/// The errors of a config the check must refuse.
pub(crate) fn errors(toml: &str) -> Vec<String> {
    match check_toml(toml) {
        Ok(_) => panic!("the check accepted:\n{toml}"),
        Err(e) => e,
    }
}

/// The IVR of a config the check must accept.
pub(crate) fn accepted(toml: &str) -> Ivr {
    check_toml(toml).unwrap_or_else(|e| panic!("the check refused:\n{}", e.join("\n")))
}

/// What the node called `name` became.
pub(crate) fn node<'a>(ivr: &'a Ivr, name: &str) -> &'a NodeKind {
    let n = ivr.nodes.iter().find(|n| n.name == name);
    &n.unwrap_or_else(|| panic!("no node {name}")).kind
}

//! The `[ivr]` part of the site config: flows as a graph of named nodes,
//! checked as a whole when the config loads.
//!
//! Checking resolves every name (node targets, lists, schedules, stations,
//! prompts in every language the flows can speak), compiles patterns, loads
//! the lookup tables, and walks the graph: a node no start reaches, or a
//! loop the call can never leave, is a config error with its place in the
//! file. The engine ([`super::engine`]) only ever sees the resolved
//! [`Ivr`].
//!
//! `check` reads the section top down: the settings every flow shares
//! (language, time zone, lists, schedules, lookup tables, routes), then each
//! node with the check of its kind, then the outbound jobs, the graph and
//! the prompts. Every check adds to one `Checker`, so a config with many
//! problems is refused with all of them at once.
//!
//! - `raw`: the section as written (serde);
//! - `site`: the settings every flow shares;
//! - `flow`: the checked graph the engine runs;
//! - `checker`: the context of one check and the helpers nodes share;
//! - `nodes_keys`, `nodes_flow`, `nodes_service`, `nodes_connect`:
//!   one check per node kind, by family;
//! - `outbound`: outbound jobs; `graph`: reachability and loops;
//!   `prompts`: prompt loading.

mod checker;
mod flow;
mod graph;
mod nodes_connect;
mod nodes_flow;
mod nodes_keys;
mod nodes_service;
mod outbound;
mod prompts;
mod raw;
mod site;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use callbox_hal::diag::Diagnostic;
use callbox_hal::dsp::tones::ToneRegion;
use callbox_hal::{LineInfo, LineKind};

use self::checker::{Checker, NodeAt};
use self::raw::RawNode;
use super::lookup::Lookups;

pub use self::flow::{
    Collect, Cond, Dest, Item, Ivr, Menu, Node, NodeId, NodeKind, OutboundJob, Route, SayAs, Target,
};
pub use self::prompts::{PromptSet, default_system_prompts};
pub(crate) use self::raw::{RawIvr, RawOutbound};

/// Problems found by [`check`]: `(key path, message)` pairs in the site
/// config, and diagnostics in other files (lookup tables).
pub(crate) type CheckErrors = (Vec<(String, String)>, Vec<Diagnostic>);

/// Where flows start besides `[ivr]` itself: the `[[outbound]]` jobs, and
/// the dial plan's access numbers (`(key path, node name)`).
pub(crate) struct Starts<'a> {
    /// `[[outbound]]` as written.
    pub(crate) outbound: &'a [RawOutbound],
    /// `[dialplan] access` entries.
    pub(crate) access: Vec<(String, String)>,
    /// The site's conference rooms, for `conference` nodes.
    pub(crate) rooms: Vec<crate::media::conference::RoomCfg>,
    /// The site has voicemail boxes (their prompts are needed).
    pub(crate) voicemail: bool,
}

/// Checks the `[ivr]` section and `[[outbound]]` jobs. Errors are
/// `(key path, message)` pairs for the caller to place in the file, or
/// ready diagnostics for problems in other files (lookup tables).
pub(crate) fn check(
    raw: &RawIvr,
    starts: &Starts<'_>,
    base: &Path,
    prompt_dir: &Path,
    lines: &[LineInfo],
    acd: Option<&crate::acd::AcdConfig>,
    acd_failed: bool,
) -> Result<Ivr, CheckErrors> {
    // The tables are files of their own: their problems come back as
    // diagnostics, apart from the errors below.
    let (lookups, lookup_diags) = Lookups::load(&raw.lookups, base);
    let mut c = Checker {
        errs: Vec::new(),
        names: HashMap::new(),
        prompt_dir: prompt_dir.to_path_buf(),
        system_dir: raw
            .system_prompts
            .as_ref()
            .map_or_else(default_system_prompts, |p| base.join(p)),
        wanted: BTreeMap::new(),
        langs: HashSet::new(),
        lines,
        acd,
        acd_failed,
        schedules: &raw.hours,
        business_hours: raw.business_hours.as_deref(),
        rooms: &starts.rooms,
        lists: HashMap::new(),
        lookups: &lookups,
    };
    site::node_names(&mut c, raw);
    let language = site::language(&mut c, raw);
    let (timezone, tz) = site::time_zone(&mut c, raw);
    site::system_prompt_folder(&mut c, raw);
    c.langs.insert(language);
    site::lists(&mut c, raw);
    let hours = site::schedules(&mut c, raw, &timezone);
    if let Some(b) = &raw.business_hours
        && !raw.hours.contains_key(b)
    {
        c.err(
            "ivr.business_hours",
            format!("`{b}` is not a schedule under [ivr.hours]"),
        );
    }
    if let Some(e) = c.lookups.config_error() {
        c.err("ivr.lookups", e);
    }

    if raw.node.is_empty() {
        c.err(
            "ivr",
            "the IVR has no nodes; add at least one `[ivr.node.NAME]`",
        );
        return Err((c.errs, lookup_diags));
    }
    let start = site::start(&mut c, raw);
    let routes = site::routes(&mut c, raw);

    if lines.iter().any(|l| l.kind == LineKind::Station) {
        // Answers to feature codes keyed on agents' phones.
        for name in [
            "beep",
            "invalid-option",
            "night-mode",
            "day-mode",
            "auto-mode",
            "not-in-service",
            "conference-pin",
            "conference-full",
            "conference-muted",
            "conference-unmuted",
        ] {
            c.wanted
                .entry(format!("system:{name}"))
                .or_insert_with(|| "ivr".into());
        }
    }
    if starts.voicemail {
        for name in [
            "voicemail-pin",
            "voicemail-wrong-pin",
            "voicemail-no-box",
            "voicemail-you-have",
            "voicemail-new",
            "voicemail-saved",
            "voicemail-message",
            "voicemail-from",
            "voicemail-options",
            "voicemail-deleted",
            "voicemail-kept",
            "voicemail-no-more",
            "voicemail-unavailable",
        ] {
            c.wanted
                .entry(format!("system:{name}"))
                .or_insert_with(|| "voicemail".into());
        }
    }
    let nodes: Vec<Node> = raw
        .node
        .iter()
        .map(|(name, rn)| Node {
            name: name.clone(),
            kind: check_node(&mut c, name, rn),
        })
        .collect();
    let jobs = outbound::check(&mut c, starts.outbound, language);

    let mut entries: Vec<NodeId> = vec![start];
    entries.extend(routes.iter().map(|r| r.start));
    entries.extend(jobs.iter().map(|j| j.start));
    let flows = raw
        .campaign_flows
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("ivr.campaign_flows[{i}]"), n.clone()));
    for (at, node) in starts.access.iter().cloned().chain(flows) {
        match c.names.get(&node) {
            Some(&id) => entries.push(id),
            None => c.err(&at, format!("`{node}` is not a node under [ivr.node]")),
        }
    }
    graph::check(&nodes, &entries, &mut c);

    let prompts = prompts::load(&mut c);

    if !c.errs.is_empty() || !lookup_diags.is_empty() {
        return Err((c.errs, lookup_diags));
    }
    let lists = c.lists;
    Ok(Ivr {
        nodes,
        start,
        routes,
        language,
        lists,
        blocked: raw.blocked.clone(),
        hours,
        business_hours: raw.business_hours.clone(),
        lookups: Arc::new(lookups),
        prompts,
        tones: raw.tones.unwrap_or(ToneRegion::China),
        tz,
        outbound: jobs,
    })
}

/// One node, by the check of its kind.
fn check_node(c: &mut Checker<'_>, name: &str, rn: &RawNode) -> NodeKind {
    let at = NodeAt {
        name,
        path: format!("ivr.node.{name}"),
    };
    match rn {
        RawNode::Menu(m) => nodes_keys::menu(c, &at, m),
        RawNode::Collect(k) => nodes_keys::collect(c, &at, k),
        RawNode::Survey(s) => nodes_keys::survey(c, &at, s),
        RawNode::Play(p) => nodes_flow::play(c, &at, p),
        RawNode::Branch(b) => nodes_flow::branch(c, &at, b),
        RawNode::Set(s) => nodes_flow::set(c, &at, s),
        RawNode::Notify(n) => nodes_flow::notify(c, &at, n),
        RawNode::Hangup(h) => nodes_flow::hangup(c, &at, h),
        RawNode::ProductCheck(p) => nodes_service::product_check(c, &at, p),
        RawNode::OrderStatus(o) => nodes_service::order_status(c, &at, o),
        RawNode::Voicemail(v) => nodes_service::voicemail(c, &at, v),
        RawNode::Callback(cb) => nodes_service::callback(c, &at, cb),
        RawNode::Queue(q) => nodes_connect::queue(c, &at, q),
        RawNode::Transfer(t) => nodes_connect::transfer(c, &at, t),
        RawNode::Conference(r) => nodes_connect::conference(c, &at, r),
    }
}

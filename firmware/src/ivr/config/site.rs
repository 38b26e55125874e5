//! Checks of the settings every flow shares: node names, the default
//! language, the time zone, the system prompt folder, number lists,
//! schedules, the start node and routes by dialled number.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::checker::{Checker, node_name_ok};
use super::flow::{NodeId, Route};
use super::raw::RawIvr;
use crate::ivr::hours::Hours;
use crate::ivr::say::Lang;

/// Numbers every node name; a name that cannot be a key path is an error.
pub(super) fn node_names(c: &mut Checker<'_>, raw: &RawIvr) {
    for (i, name) in raw.node.keys().enumerate() {
        if !node_name_ok(name) {
            c.err(
                format!("ivr.node.{name}"),
                format!("node name `{name}` must be 1-64 letters, digits, `-` or `_`"),
            );
        }
        c.names.insert(name.clone(), i);
    }
}

/// The language of flows no route or job gives one.
pub(super) fn language(c: &mut Checker<'_>, raw: &RawIvr) -> Lang {
    match &raw.language {
        Some(l) => c.lang("ivr.language", l).unwrap_or(Lang::En),
        None => Lang::En,
    }
}

/// The time zone by name (schedules default to it) and resolved.
pub(super) fn time_zone(c: &mut Checker<'_>, raw: &RawIvr) -> (String, TimeZone) {
    let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    // Resolved once here; the engine speaks dates and times in it.
    let tz = match TimeZone::get(&timezone) {
        Ok(tz) => tz,
        Err(e) => {
            c.err(
                "ivr.timezone",
                format!(
                    "unknown time zone `{timezone}` ({e}); use an IANA name such as \"Asia/Shanghai\""
                ),
            );
            TimeZone::UTC
        }
    };
    (timezone, tz)
}

/// The system prompt set must be there (the say functions need it).
pub(super) fn system_prompt_folder(c: &mut Checker<'_>, raw: &RawIvr) {
    if !c.system_dir.is_dir() {
        c.err(
            if raw.system_prompts.is_some() { "ivr.system_prompts" } else { "ivr" },
            format!(
                "system prompt folder {} not found (install the prompt set or set `system_prompts`)",
                c.system_dir.display()
            ),
        );
    }
}

/// Number lists into [`Checker::lists`], and the blocked list among them.
pub(super) fn lists(c: &mut Checker<'_>, raw: &RawIvr) {
    for (name, entries) in &raw.lists {
        let mut ps = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(p) = c.pattern(&format!("ivr.lists.{name}[{i}]"), e) {
                ps.push(p);
            }
        }
        c.lists.insert(name.clone(), ps);
    }
    if let Some(b) = &raw.blocked
        && !c.lists.contains_key(b)
    {
        c.err(
            "ivr.blocked",
            format!("`{b}` is not a list under [ivr.lists]"),
        );
    }
}

/// Schedules that pass their check; `timezone` is for those that name none.
pub(super) fn schedules(
    c: &mut Checker<'_>,
    raw: &RawIvr,
    timezone: &str,
) -> HashMap<String, Hours> {
    let mut hours = HashMap::new();
    for (name, h) in &raw.hours {
        let at = format!("ivr.hours.{name}");
        let mut errs = Vec::new();
        if let Some(h) = Hours::check(h, timezone, &at, &mut |k, m| errs.push((k, m))) {
            hours.insert(name.clone(), h);
        }
        c.errs.extend(errs);
    }
    hours
}

/// Where inbound calls no route matches begin.
pub(super) fn start(c: &mut Checker<'_>, raw: &RawIvr) -> NodeId {
    match &raw.start {
        Some(s) => match c.names.get(s) {
            Some(&id) => id,
            None => {
                c.err("ivr.start", format!("`{s}` is not a node"));
                0
            }
        },
        None => {
            c.err(
                "ivr.start",
                "the IVR needs `start`, the node every inbound call begins at",
            );
            0
        }
    }
}

/// Routes by dialled number, each with its start and language.
pub(super) fn routes(c: &mut Checker<'_>, raw: &RawIvr) -> Vec<Route> {
    let mut routes = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let at = format!("ivr.route[{i}]");
        let dialled = r
            .dialled
            .iter()
            .enumerate()
            .filter_map(|(j, d)| c.pattern(&format!("{at}.dialled[{j}]"), d))
            .collect();
        let start = match c.names.get(&r.start) {
            Some(&id) => id,
            None => {
                c.err(
                    format!("{at}.start"),
                    format!("`{}` is not a node", r.start),
                );
                0
            }
        };
        let language = r
            .language
            .as_ref()
            .and_then(|l| c.lang(&format!("{at}.language"), l));
        if let Some(l) = language {
            c.langs.insert(l);
        }
        routes.push(Route {
            dialled,
            start,
            language,
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use crate::ivr::config::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    const PLAY: &str = "type = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"";

    #[test]
    fn ivr_without_nodes_is_refused() {
        assert_eq!(
            errors("[ivr]\nstart = \"n\""),
            ["ivr: the IVR has no nodes; add at least one `[ivr.node.NAME]`"]
        );
    }

    #[test]
    fn ivr_without_start_is_refused() {
        let cfg = format!("[ivr]\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.start: the IVR needs `start`, the node every inbound call begins at"]
        );
    }

    #[test]
    fn start_at_unknown_node_is_refused() {
        let cfg = format!("[ivr]\nstart = \"nope\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(errors(&cfg), ["ivr.start: `nope` is not a node"]);
    }

    #[test]
    fn node_name_with_a_space_is_refused() {
        let cfg = format!("[ivr]\nstart = \"a b\"\n[ivr.node.\"a b\"]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.a b: node name `a b` must be 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn defaults_are_english_utc_and_chinese_tones() {
        let ivr = accepted(&one_node(PLAY));
        assert_eq!(ivr.language, Lang::En);
        assert_eq!(ivr.tz, jiff::tz::TimeZone::UTC);
        assert_eq!(ivr.tones, callbox_hal::dsp::tones::ToneRegion::China);
    }

    #[test]
    fn unknown_language_is_refused() {
        let cfg = format!("[ivr]\nlanguage = \"fr\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.language: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let cfg =
            format!("[ivr]\ntimezone = \"Mars/Olympus\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("ivr.timezone: unknown time zone `Mars/Olympus` (")
                && errs[0].ends_with("); use an IANA name such as \"Asia/Shanghai\""),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_system_prompt_folder_is_refused() {
        let cfg =
            format!("[ivr]\nsystem_prompts = \"nowhere\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.system_prompts: system prompt folder DIR/nowhere not found (install the prompt set or set `system_prompts`)",
                "ivr: system prompt `auto-mode` for language en not found (looked in DIR/prompts/system/en/auto-mode.wav, DIR/nowhere/en/auto-mode.wav); the say functions need it",
                "ivr: system prompt `beep` for language en not found (looked in DIR/prompts/system/en/beep.wav, DIR/nowhere/en/beep.wav); the say functions need it",
                "ivr: system prompt `conference-full` for language en not found (looked in DIR/prompts/system/en/conference-full.wav, DIR/nowhere/en/conference-full.wav); the say functions need it",
                "ivr: system prompt `conference-muted` for language en not found (looked in DIR/prompts/system/en/conference-muted.wav, DIR/nowhere/en/conference-muted.wav); the say functions need it",
                "ivr: system prompt `conference-pin` for language en not found (looked in DIR/prompts/system/en/conference-pin.wav, DIR/nowhere/en/conference-pin.wav); the say functions need it",
                "ivr: system prompt `conference-unmuted` for language en not found (looked in DIR/prompts/system/en/conference-unmuted.wav, DIR/nowhere/en/conference-unmuted.wav); the say functions need it",
                "ivr: system prompt `day-mode` for language en not found (looked in DIR/prompts/system/en/day-mode.wav, DIR/nowhere/en/day-mode.wav); the say functions need it",
                "ivr: system prompt `invalid-option` for language en not found (looked in DIR/prompts/system/en/invalid-option.wav, DIR/nowhere/en/invalid-option.wav); the say functions need it",
                "ivr: system prompt `night-mode` for language en not found (looked in DIR/prompts/system/en/night-mode.wav, DIR/nowhere/en/night-mode.wav); the say functions need it",
                "ivr: system prompt `not-in-service` for language en not found (looked in DIR/prompts/system/en/not-in-service.wav, DIR/nowhere/en/not-in-service.wav); the say functions need it",
            ]
        );
    }

    #[test]
    fn list_entry_that_is_not_a_pattern_is_refused() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lists]\nvip = [\"138X.\", \"1[2\"]\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.lists.vip[1]: `[` in pattern `1[2` has no closing `]`"]
        );
    }

    #[test]
    fn blocking_an_unknown_list_is_refused() {
        let cfg = format!("[ivr]\nblocked = \"spam\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.blocked: `spam` is not a list under [ivr.lists]"]
        );
    }

    #[test]
    fn blocked_list_is_kept() {
        let cfg = format!(
            "[ivr]\nblocked = \"spam\"\nstart = \"n\"\n[ivr.lists]\nspam = [\"400.\"]\n[ivr.node.n]\n{PLAY}"
        );
        let ivr = accepted(&cfg);
        assert_eq!(ivr.blocked.as_deref(), Some("spam"));
        assert!(ivr.in_list("spam", Some("4001234")));
    }

    #[test]
    fn schedule_errors_are_reported() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.hours.office]\nmon = [\"9-5\"]\n[ivr.node.n]\n{PLAY}"
        );
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("ivr.hours.office.mon[0]: "), "{errs:?}");
    }

    #[test]
    fn route_errors_name_the_route() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\", \"\"]\nstart = \"nope\"\nlanguage = \"fr\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.route[0].dialled[1]: an empty pattern matches nothing",
                "ivr.route[0].start: `nope` is not a node",
                "ivr.route[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\"",
            ]
        );
    }

    #[test]
    fn route_picks_its_start_and_language() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"m\"\nlanguage = \"zh\"\n[ivr.node.n]\n{PLAY}\n[ivr.node.m]\n{PLAY}"
        );
        let ivr = accepted(&cfg);
        let m = ivr.nodes.iter().position(|n| n.name == "m").unwrap();
        let n = ivr.nodes.iter().position(|n| n.name == "n").unwrap();
        assert_eq!(ivr.route(Some("800")), (m, Lang::Zh));
        assert_eq!(ivr.route(Some("801")), (n, Lang::En));
    }

    #[test]
    fn regions_without_products_are_refused() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lookups]\nregions = \"regions.csv\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.lookups: `regions` is only used by product checks; add `products`"]
        );
    }

    #[test]
    fn bad_lookup_table_is_reported_in_its_own_file() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lookups]\nproducts = \"orders.csv\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["DIR/orders.csv:1:1: the first line must be the header `code,region,product`"]
        );
    }
}

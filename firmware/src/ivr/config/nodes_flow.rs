//! Checks of the nodes that steer the flow and keep its state: playing,
//! branching, setting variables, telling headquarters, hanging up.

use super::checker::{Checker, NodeAt};
use super::flow::{Cond, NodeKind};
use super::raw::{RawBranch, RawCase, RawHangup, RawNotify, RawPlay, RawSet};

/// Prompts and values played in turn.
pub(super) fn play(c: &mut Checker<'_>, at: &NodeAt<'_>, pl: &RawPlay) -> NodeKind {
    NodeKind::Play {
        items: c.items(&at.key("prompts"), Some(&pl.prompts), &[]),
        barge_in: pl.barge_in,
        next: c.target(&at.key("next"), &pl.next),
    }
}

/// The first case whose condition holds picks the target.
pub(super) fn branch(c: &mut Checker<'_>, at: &NodeAt<'_>, b: &RawBranch) -> NodeKind {
    let mut cases = Vec::new();
    for (i, case) in b.cases.iter().enumerate() {
        let cp = at.key(&format!("cases[{i}]"));
        let Some(cond) = condition(c, &cp, case) else {
            continue;
        };
        let t = c.target(&format!("{cp}.goto"), &case.goto);
        cases.push((cond, t));
    }
    NodeKind::Branch {
        cases,
        default: c.target(&at.key("default"), &b.default),
    }
}

/// A case's condition, `None` when it cannot be tested (the error is
/// noted at `cp`, the case's key path).
fn condition(c: &mut Checker<'_>, cp: &str, case: &RawCase) -> Option<Cond> {
    let set = [
        case.open.is_some(),
        case.holiday.is_some(),
        case.caller_in.is_some(),
        case.dialled.is_some(),
        case.var.is_some(),
        case.language.is_some(),
        case.mode.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if set != 1 {
        c.err(
            cp,
            "a case tests exactly one of: open, holiday, caller_in, dialled, var (with equals or matches), language, mode",
        );
        return None;
    }
    if let Some(h) = case.open.as_ref().or(case.holiday.as_ref()) {
        if !c.schedules.contains_key(h) {
            c.err(cp, format!("`{h}` is not a schedule under [ivr.hours]"));
        }
        if case.open.is_some() {
            Some(Cond::Open(h.clone()))
        } else {
            Some(Cond::Holiday(h.clone()))
        }
    } else if let Some(l) = &case.caller_in {
        if !c.lists.contains_key(l) {
            c.err(
                format!("{cp}.caller_in"),
                format!("`{l}` is not a list under [ivr.lists]"),
            );
        }
        Some(Cond::CallerIn(l.clone()))
    } else if let Some(ds) = &case.dialled {
        Some(Cond::Dialled(
            ds.iter()
                .enumerate()
                .filter_map(|(j, d)| c.pattern(&format!("{cp}.dialled[{j}]"), d))
                .collect(),
        ))
    } else if let Some(v) = &case.var {
        match (&case.equals, &case.matches) {
            (Some(e), None) => Some(Cond::VarEquals(v.clone(), e.clone())),
            (None, Some(m)) => c
                .pattern(&format!("{cp}.matches"), m)
                .map(|pat| Cond::VarMatches(v.clone(), pat)),
            _ => {
                c.err(
                    cp,
                    "a `var` case needs exactly one of `equals` or `matches`",
                );
                None
            }
        }
    } else if let Some(m) = &case.mode {
        if c.business_hours.is_none() {
            c.err(
                format!("{cp}.mode"),
                "the day/night switch in `auto` follows business hours: name their schedule with `business_hours` under [ivr]",
            );
        }
        match m.as_str() {
            "night" => Some(Cond::Night(true)),
            "day" => Some(Cond::Night(false)),
            other => {
                c.err(
                    format!("{cp}.mode"),
                    format!("unknown mode `{other}`; use \"day\" or \"night\""),
                );
                None
            }
        }
    } else {
        let l = case.language.as_deref().unwrap_or("");
        c.lang(&format!("{cp}.language"), l).map(Cond::Language)
    }
}

/// A variable from a template; `language` switches the call's language.
pub(super) fn set(c: &mut Checker<'_>, at: &NodeAt<'_>, s: &RawSet) -> NodeKind {
    if s.var == "language"
        && !s.value.contains('{')
        && let Some(l) = c.lang(&at.key("value"), &s.value)
    {
        c.langs.insert(l);
    }
    NodeKind::Set {
        var: s.var.clone(),
        value: s.value.clone(),
        recordable: s.recordable,
        next: c.target(&at.key("next"), &s.next),
    }
}

/// An event for headquarters.
pub(super) fn notify(c: &mut Checker<'_>, at: &NodeAt<'_>, n: &RawNotify) -> NodeKind {
    NodeKind::Notify {
        event: n.event.clone(),
        fields: n
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        next: c.target(&at.key("next"), &n.next),
    }
}

/// A last prompt, and the outcome stored on the call record.
pub(super) fn hangup(c: &mut Checker<'_>, at: &NodeAt<'_>, h: &RawHangup) -> NodeKind {
    NodeKind::Hangup {
        prompt: c.items(&at.key("prompt"), h.prompt.as_ref(), &[]),
        outcome: h.outcome.clone().unwrap_or_else(|| at.name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use crate::ivr::config::testing::{accepted, errors, node, one_node};
    use crate::ivr::config::{Cond, Item, NodeKind, Target};
    use crate::ivr::say::Lang;

    #[test]
    fn play_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"",
        ));
        let NodeKind::Play {
            items,
            barge_in,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a play")
        };
        assert_eq!(items, &[Item::Prompt("site:hello.wav".into())]);
        assert!(!barge_in);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn play_prompt_that_is_missing_is_refused() {
        let cfg = one_node("type = \"play\"\nprompts = [\"gone.wav\"]\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts[0]: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    /// A branch node `n` with `cases`, beside a schedule `office` and a
    /// list `vip`.
    fn branch(cases: &str) -> String {
        format!(
            r#"[ivr]
start = "n"
[ivr.hours.office]
mon = ["09:00-17:00"]
[ivr.lists]
vip = ["138X."]
[ivr.node.n]
type = "branch"
default = "hangup"
cases = [
{cases}
]"#
        )
    }

    #[test]
    fn branch_on_every_kind_of_condition_is_accepted() {
        let ivr = accepted(&branch(
            r#"{ open = "office", goto = "hangup" },
{ holiday = "office", goto = "hangup" },
{ caller_in = "vip", goto = "hangup" },
{ dialled = ["800", "9X."], goto = "hangup" },
{ var = "a", equals = "1", goto = "hangup" },
{ var = "b", matches = "1X", goto = "hangup" },
{ language = "zh", goto = "back" },"#,
        ));
        let NodeKind::Branch { cases, default } = node(&ivr, "n") else {
            panic!("not a branch")
        };
        assert_eq!(*default, Target::Hangup);
        assert_eq!(cases.len(), 7);
        assert!(matches!(&cases[0].0, Cond::Open(h) if h == "office"));
        assert!(matches!(&cases[1].0, Cond::Holiday(h) if h == "office"));
        assert!(matches!(&cases[2].0, Cond::CallerIn(l) if l == "vip"));
        assert!(matches!(&cases[3].0, Cond::Dialled(ps) if ps.len() == 2));
        assert!(matches!(&cases[4].0, Cond::VarEquals(v, e) if v == "a" && e == "1"));
        assert!(matches!(&cases[5].0, Cond::VarMatches(v, _) if v == "b"));
        assert!(matches!(
            &cases[6],
            (Cond::Language(Lang::Zh), Target::Back)
        ));
    }

    #[test]
    fn branch_case_testing_two_things_or_none_is_refused() {
        let msg = "a case tests exactly one of: open, holiday, caller_in, dialled, var (with equals or matches), language, mode";
        assert_eq!(
            errors(&branch(
                r#"{ open = "office", caller_in = "vip", goto = "hangup" },
{ goto = "hangup" },"#
            )),
            [
                format!("ivr.node.n.cases[0]: {msg}"),
                format!("ivr.node.n.cases[1]: {msg}"),
            ]
        );
    }

    #[test]
    fn branch_on_unknown_schedule_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ holiday = "shop", goto = "hangup" },"#)),
            ["ivr.node.n.cases[0]: `shop` is not a schedule under [ivr.hours]"]
        );
    }

    #[test]
    fn branch_on_schedule_with_errors_reports_only_the_schedule() {
        let cfg = branch(r#"{ open = "shop", goto = "hangup" },"#).replace(
            "[ivr.lists]",
            "[ivr.hours.shop]\nmon = [\"9-5\"]\n[ivr.lists]",
        );
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("ivr.hours.shop.mon[0]: "), "{errs:?}");
    }

    #[test]
    fn branch_on_unknown_list_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ caller_in = "vvip", goto = "hangup" },"#)),
            ["ivr.node.n.cases[0].caller_in: `vvip` is not a list under [ivr.lists]"]
        );
    }

    #[test]
    fn branch_on_dialled_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ dialled = ["800", "[]"], goto = "hangup" },"#)),
            ["ivr.node.n.cases[0].dialled[1]: empty `[]` in pattern `[]`"]
        );
    }

    #[test]
    fn branch_on_var_needs_one_of_equals_or_matches() {
        let msg = "a `var` case needs exactly one of `equals` or `matches`";
        assert_eq!(
            errors(&branch(
                r#"{ var = "a", goto = "hangup" },
{ var = "a", equals = "1", matches = "1", goto = "hangup" },"#
            )),
            [
                format!("ivr.node.n.cases[0]: {msg}"),
                format!("ivr.node.n.cases[1]: {msg}"),
            ]
        );
    }

    #[test]
    fn branch_on_var_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&branch(
                r#"{ var = "a", matches = "[a]", goto = "hangup" },"#
            )),
            [
                "ivr.node.n.cases[0].matches: `a` inside `[...]` in pattern `[a]`: only digits and ranges like 1-5"
            ]
        );
    }

    #[test]
    fn branch_on_unknown_language_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ language = "fr", goto = "hangup" },"#)),
            [
                "ivr.node.n.cases[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\""
            ]
        );
    }

    #[test]
    fn branch_to_unknown_node_is_refused() {
        let cfg = branch(r#"{ var = "a", equals = "1", goto = "x" },"#)
            .replace("default = \"hangup\"", "default = \"y\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.cases[0].goto: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.default: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    #[test]
    fn set_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"who\"\nvalue = \"{caller}\"\nrecordable = true\nnext = \"hangup\"",
        ));
        let NodeKind::Set {
            var,
            value,
            recordable,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a set")
        };
        assert_eq!((var.as_str(), value.as_str()), ("who", "{caller}"));
        assert!(*recordable);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn setting_the_language_loads_its_prompts() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"language\"\nvalue = \"zh\"\nnext = \"hangup\"",
        ));
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_some());
    }

    #[test]
    fn setting_an_unknown_language_is_refused() {
        let cfg = one_node("type = \"set\"\nvar = \"language\"\nvalue = \"fr\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.value: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn setting_the_language_from_a_template_is_left_to_the_call() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"language\"\nvalue = \"{lang}\"\nnext = \"hangup\"",
        ));
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_none());
    }

    #[test]
    fn notify_keeps_its_fields() {
        let ivr = accepted(&one_node(
            "type = \"notify\"\nevent = \"lead\"\nfields = { b = \"{caller}\", a = \"x\" }\nnext = \"hangup\"",
        ));
        let NodeKind::Notify {
            event,
            fields,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a notify")
        };
        assert_eq!(event, "lead");
        assert_eq!(
            fields,
            &[
                ("a".to_string(), "x".to_string()),
                ("b".to_string(), "{caller}".to_string())
            ]
        );
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn notify_then_unknown_node_is_refused() {
        let cfg = one_node("type = \"notify\"\nevent = \"lead\"\nnext = \"x\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.next: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn hangup_outcome_defaults_to_the_node_name() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[ivr.node.n]\ntype = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"bye\", 2 = \"done\" }\n[ivr.node.bye]\ntype = \"hangup\"\n[ivr.node.done]\ntype = \"hangup\"\nprompt = \"bye.wav\"\noutcome = \"resolved\"",
        );
        let NodeKind::Hangup { prompt, outcome } = node(&ivr, "bye") else {
            panic!("not a hangup")
        };
        assert!(prompt.is_empty());
        assert_eq!(outcome, "bye");
        let NodeKind::Hangup { prompt, outcome } = node(&ivr, "done") else {
            panic!("not a hangup")
        };
        assert_eq!(prompt, &[Item::Prompt("site:bye.wav".into())]);
        assert_eq!(outcome, "resolved");
    }

    #[test]
    fn hangup_prompt_that_is_missing_is_refused() {
        let cfg = one_node("type = \"hangup\"\nprompt = \"gone.wav\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompt: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }
}

//! Checks of the nodes that read the caller's keys: menus, digit
//! collection and the satisfaction survey.

use super::checker::{Checker, DEFAULT_FIRST_DIGIT, DEFAULT_INTER_DIGIT, NodeAt};
use super::flow::{Collect, Menu, NodeKind};
use super::raw::{RawCollect, RawMenu, RawSurvey};

/// A menu: options by key sequence, with retries after wrong keys and
/// silence.
pub(super) fn menu(c: &mut Checker<'_>, at: &NodeAt<'_>, m: &RawMenu) -> NodeKind {
    let mut options = Vec::new();
    for (key, t) in &m.options {
        if key.is_empty() || !key.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
            c.err(
                at.key(&format!("options.{key}")),
                format!("option `{key}` must be keys of a phone keypad (0-9, *, #, A-D)"),
            );
            continue;
        }
        let target = c.target(&at.key(&format!("options.{key}")), t);
        options.push((key.clone(), target));
    }
    if m.options.is_empty() {
        c.err(at.key("options"), "a menu needs at least one option");
    }
    let greeting = c.items(&at.key("greeting"), Some(&m.greeting), &[]);
    let short_greeting = match &m.short_greeting {
        Some(s) => c.items(&at.key("short_greeting"), Some(s), &[]),
        None => greeting.clone(),
    };
    let on_max_failures = c.target(
        &at.key("on_max_failures"),
        m.on_max_failures.as_deref().unwrap_or("hangup"),
    );
    let on_max_timeouts = match &m.on_max_timeouts {
        Some(t) => c.target(&at.key("on_max_timeouts"), t),
        None => on_max_failures,
    };
    let max_len = options
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(1);
    NodeKind::Menu(Menu {
        greeting,
        short_greeting,
        invalid: c.items(
            &at.key("invalid"),
            m.invalid.as_ref(),
            &["system:invalid-option"],
        ),
        no_input: c.items(
            &at.key("no_input"),
            m.no_input.as_ref(),
            &["system:timeout"],
        ),
        exit: c.items(
            &at.key("exit"),
            m.exit.as_ref(),
            &["system:too-many-errors"],
        ),
        first_digit_timeout: c.duration(
            &at.key("first_digit_timeout"),
            m.first_digit_timeout.as_ref(),
            DEFAULT_FIRST_DIGIT,
        ),
        inter_digit_timeout: c.duration(
            &at.key("inter_digit_timeout"),
            m.inter_digit_timeout.as_ref(),
            DEFAULT_INTER_DIGIT,
        ),
        max_failures: c.count(&at.key("max_failures"), m.max_failures, 3),
        max_timeouts: c.count(&at.key("max_timeouts"), m.max_timeouts, 3),
        on_max_failures,
        on_max_timeouts,
        barge_in: m.barge_in.unwrap_or(true),
        options,
        max_len,
    })
}

/// Digits into a variable, by length, terminator and pattern.
pub(super) fn collect(c: &mut Checker<'_>, at: &NodeAt<'_>, k: &RawCollect) -> NodeKind {
    let min = k.min.unwrap_or(1);
    let max = k.max.unwrap_or(min.max(20));
    if min == 0 || max < min || max > 64 {
        c.err(
            at.key("max"),
            format!("digit lengths must satisfy 1 <= min <= max <= 64 (min {min}, max {max})"),
        );
    }
    let terminator = match k.terminator.as_deref() {
        None => Some('#'),
        Some("") => None,
        Some(t)
            if t.chars().count() == 1
                && callbox_hal::dsp::dtmf::is_dtmf_digit(t.chars().next().unwrap_or(' ')) =>
        {
            t.chars().next()
        }
        Some(t) => {
            c.err(
                at.key("terminator"),
                format!("terminator `{t}` must be one key (usually \"#\"), or \"\" for none"),
            );
            None
        }
    };
    let pattern = k
        .pattern
        .as_ref()
        .and_then(|s| c.pattern(&at.key("pattern"), s));
    NodeKind::Collect(Collect {
        var: k.var.clone(),
        prompt: c.items(&at.key("prompt"), Some(&k.prompt), &[]),
        min,
        max,
        terminator,
        pattern,
        retries: k.retries.unwrap_or(2),
        invalid: c.items(
            &at.key("invalid"),
            k.invalid.as_ref(),
            &["system:invalid-option"],
        ),
        no_input: c.items(
            &at.key("no_input"),
            k.no_input.as_ref(),
            &["system:timeout"],
        ),
        first_digit_timeout: c.duration(
            &at.key("first_digit_timeout"),
            k.first_digit_timeout.as_ref(),
            DEFAULT_FIRST_DIGIT,
        ),
        inter_digit_timeout: c.duration(
            &at.key("inter_digit_timeout"),
            k.inter_digit_timeout.as_ref(),
            DEFAULT_INTER_DIGIT,
        ),
        barge_in: k.barge_in.unwrap_or(true),
        recordable: k.recordable,
        next: c.target(&at.key("next"), &k.next),
        on_failure: c.target(
            &at.key("on_failure"),
            k.on_failure.as_deref().unwrap_or("hangup"),
        ),
    })
}

/// A score from 1 to 5.
pub(super) fn survey(c: &mut Checker<'_>, at: &NodeAt<'_>, s: &RawSurvey) -> NodeKind {
    NodeKind::Survey {
        prompt: c.items(&at.key("prompt"), s.prompt.as_ref(), &["system:survey"]),
        thanks: c.items(
            &at.key("thanks"),
            s.thanks.as_ref(),
            &["system:survey-thanks"],
        ),
        timeout: c.duration(&at.key("timeout"), s.timeout.as_ref(), DEFAULT_FIRST_DIGIT),
        next: c.target(&at.key("next"), &s.next),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ivr::config::testing::{accepted, errors, node, one_node};
    use crate::ivr::config::{Item, NodeKind, Target};

    fn menu(extra: &str) -> String {
        one_node(&format!(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = {{ 1 = \"hangup\" }}\n{extra}"
        ))
    }

    #[test]
    fn menu_with_defaults_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"hangup\", 12 = \"back\" }",
        ));
        let NodeKind::Menu(m) = node(&ivr, "n") else {
            panic!("not a menu")
        };
        assert_eq!(m.greeting, [Item::Prompt("site:hello.wav".into())]);
        assert_eq!(m.short_greeting, m.greeting);
        assert_eq!(m.invalid, [Item::Prompt("system:invalid-option".into())]);
        assert_eq!(m.no_input, [Item::Prompt("system:timeout".into())]);
        assert_eq!(m.exit, [Item::Prompt("system:too-many-errors".into())]);
        assert_eq!(m.first_digit_timeout, Duration::from_secs(5));
        assert_eq!(m.inter_digit_timeout, Duration::from_secs(3));
        assert_eq!((m.max_failures, m.max_timeouts), (3, 3));
        assert_eq!(
            (m.on_max_failures, m.on_max_timeouts),
            (Target::Hangup, Target::Hangup)
        );
        assert!(m.barge_in);
        assert_eq!(m.max_len, 2);
    }

    #[test]
    fn menu_timeouts_follow_failures_unless_set() {
        let ivr = accepted(
            r#"[ivr]
start = "n"
[ivr.node.n]
type = "menu"
greeting = "hello.wav"
short_greeting = "bye.wav"
options = { 1 = "m" }
on_max_failures = "back"
[ivr.node.m]
type = "menu"
greeting = "hello.wav"
options = { 1 = "hangup" }
on_max_failures = "back"
on_max_timeouts = "top""#,
        );
        let NodeKind::Menu(n) = node(&ivr, "n") else {
            panic!("not a menu")
        };
        assert_eq!(n.short_greeting, [Item::Prompt("site:bye.wav".into())]);
        assert_eq!(
            (n.on_max_failures, n.on_max_timeouts),
            (Target::Back, Target::Back)
        );
        let NodeKind::Menu(m) = node(&ivr, "m") else {
            panic!("not a menu")
        };
        assert_eq!(
            (m.on_max_failures, m.on_max_timeouts),
            (Target::Back, Target::Top)
        );
    }

    #[test]
    fn menu_option_to_unknown_node_is_refused() {
        let cfg =
            one_node("type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"nowhere\" }");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.options.1: `nowhere` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn menu_option_that_is_not_keypad_keys_is_refused() {
        let cfg = one_node(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1x = \"hangup\", 2 = \"hangup\" }",
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.options.1x: option `1x` must be keys of a phone keypad (0-9, *, #, A-D)"]
        );
    }

    #[test]
    fn menu_without_options_is_refused() {
        let cfg = one_node("type = \"menu\"\ngreeting = \"hello.wav\"\noptions = {}");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.options: a menu needs at least one option"]
        );
    }

    #[test]
    fn menu_greeting_that_is_missing_is_refused() {
        let cfg = one_node(
            "type = \"menu\"\ngreeting = [\"hello.wav\", \"gone.wav\"]\noptions = { 1 = \"hangup\" }",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.greeting[1]: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn menu_timeout_longer_than_a_minute_is_refused() {
        assert_eq!(
            errors(&menu("first_digit_timeout = \"2m\"")),
            ["ivr.node.n.first_digit_timeout: 2m is longer than the 60s a caller waits"]
        );
    }

    #[test]
    fn menu_timeout_of_zero_is_refused() {
        assert_eq!(
            errors(&menu("inter_digit_timeout = \"0s\"")),
            [
                "ivr.node.n.inter_digit_timeout: a timeout of zero would never let the caller key anything"
            ]
        );
    }

    #[test]
    fn menu_timeout_that_is_not_a_duration_is_refused() {
        let errs = errors(&menu("first_digit_timeout = \"soon\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("ivr.node.n.first_digit_timeout: `soon` is not a duration ("),
            "{errs:?}"
        );
    }

    #[test]
    fn menu_allowing_zero_failures_is_refused() {
        assert_eq!(
            errors(&menu("max_failures = 0\nmax_timeouts = 0")),
            [
                "ivr.node.n.max_failures: must be at least 1 (the first wrong entry or timeout counts)",
                "ivr.node.n.max_timeouts: must be at least 1 (the first wrong entry or timeout counts)",
            ]
        );
    }

    #[test]
    fn menu_exit_to_unknown_node_is_refused() {
        assert_eq!(
            errors(&menu("on_max_failures = \"a\"\non_max_timeouts = \"b\"")),
            [
                "ivr.node.n.on_max_failures: `a` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.on_max_timeouts: `b` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    fn collect(extra: &str) -> String {
        one_node(&format!(
            "type = \"collect\"\nvar = \"code\"\nprompt = \"hello.wav\"\nnext = \"hangup\"\n{extra}"
        ))
    }

    #[test]
    fn collect_with_defaults_is_accepted() {
        let ivr = accepted(&collect(""));
        let NodeKind::Collect(k) = node(&ivr, "n") else {
            panic!("not a collect")
        };
        assert_eq!(k.var, "code");
        assert_eq!((k.min, k.max), (1, 20));
        assert_eq!(k.terminator, Some('#'));
        assert!(k.pattern.is_none());
        assert_eq!(k.retries, 2);
        assert_eq!(k.invalid, [Item::Prompt("system:invalid-option".into())]);
        assert_eq!(k.no_input, [Item::Prompt("system:timeout".into())]);
        assert_eq!(k.first_digit_timeout, Duration::from_secs(5));
        assert_eq!(k.inter_digit_timeout, Duration::from_secs(3));
        assert!(k.barge_in && !k.recordable);
        assert_eq!((k.next, k.on_failure), (Target::Hangup, Target::Hangup));
    }

    #[test]
    fn collect_max_defaults_to_twenty_or_min() {
        let ivr = accepted(&collect("min = 30"));
        let NodeKind::Collect(k) = node(&ivr, "n") else {
            panic!("not a collect")
        };
        assert_eq!((k.min, k.max), (30, 30));
    }

    #[test]
    fn collect_lengths_out_of_order_are_refused() {
        let msg = |min, max| {
            format!(
                "ivr.node.n.max: digit lengths must satisfy 1 <= min <= max <= 64 (min {min}, max {max})"
            )
        };
        assert_eq!(errors(&collect("min = 5\nmax = 3")), [msg(5, 3)]);
        assert_eq!(errors(&collect("min = 0")), [msg(0, 20)]);
        assert_eq!(errors(&collect("max = 65")), [msg(1, 65)]);
    }

    #[test]
    fn collect_terminator_of_two_keys_is_refused() {
        assert_eq!(
            errors(&collect("terminator = \"##\"")),
            [
                "ivr.node.n.terminator: terminator `##` must be one key (usually \"#\"), or \"\" for none"
            ]
        );
    }

    #[test]
    fn collect_terminator_can_be_another_key_or_none() {
        for (written, want) in [("*", Some('*')), ("", None)] {
            let ivr = accepted(&collect(&format!("terminator = \"{written}\"")));
            let NodeKind::Collect(k) = node(&ivr, "n") else {
                panic!("not a collect")
            };
            assert_eq!(k.terminator, want);
        }
    }

    #[test]
    fn collect_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&collect("pattern = \"1.2\"")),
            ["ivr.node.n.pattern: `.` in pattern `1.2` may only come last (it matches the rest)"]
        );
    }

    #[test]
    fn collect_failure_to_unknown_node_is_refused() {
        assert_eq!(
            errors(&collect("on_failure = \"nowhere\"")),
            [
                "ivr.node.n.on_failure: `nowhere` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn survey_with_defaults_is_accepted() {
        let ivr = accepted(&one_node("type = \"survey\"\nnext = \"hangup\""));
        let NodeKind::Survey {
            prompt,
            thanks,
            timeout,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a survey")
        };
        assert_eq!(prompt, &[Item::Prompt("system:survey".into())]);
        assert_eq!(thanks, &[Item::Prompt("system:survey-thanks".into())]);
        assert_eq!(*timeout, Duration::from_secs(5));
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn survey_timeout_longer_than_a_minute_is_refused() {
        let cfg = one_node("type = \"survey\"\ntimeout = \"90s\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.timeout: 90s is longer than the 60s a caller waits"]
        );
    }
}

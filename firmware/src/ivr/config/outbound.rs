//! Checks of `[[outbound]]` jobs: voice calls the box places itself, each
//! running a flow of the IVR once answered.

use std::collections::HashSet;
use std::time::Duration;

use super::checker::{Checker, node_name_ok};
use super::flow::OutboundJob;
use super::raw::RawOutbound;
use crate::ivr::say::Lang;

/// Checks the jobs; `language` is the IVR's, for jobs that name none.
pub(super) fn check(
    c: &mut Checker<'_>,
    outbound: &[RawOutbound],
    language: Lang,
) -> Vec<OutboundJob> {
    let mut jobs = Vec::new();
    let mut job_names = HashSet::new();
    for (i, o) in outbound.iter().enumerate() {
        let at = format!("outbound[{i}]");
        let p = |k: &str| format!("{at}.{k}");
        if !node_name_ok(&o.name) || !job_names.insert(o.name.clone()) {
            c.err(
                p("name"),
                format!(
                    "job name `{}` must be unique, 1-64 letters, digits, `-` or `_`",
                    o.name
                ),
            );
        }
        if o.number.is_empty() || !o.number.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
            c.err(
                p("number"),
                format!("`{}` is not a number that can be dialled", o.number),
            );
        }
        let start = match c.names.get(&o.start) {
            Some(&id) => id,
            None => {
                c.err(p("start"), format!("`{}` is not a node", o.start));
                0
            }
        };
        let language = match &o.language {
            Some(l) => c.lang(&p("language"), l).unwrap_or(language),
            None => language,
        };
        c.langs.insert(language);
        let after =
            c.checked_duration(&p("after"), o.after.as_ref(), Duration::ZERO, |_, _| Ok(()));
        let ring_timeout = c.ring_time(
            &p("ring_timeout"),
            o.ring_timeout.as_ref(),
            Duration::from_secs(30),
        );
        let retry_every = c.checked_duration(
            &p("retry_every"),
            o.retry_every.as_ref(),
            Duration::from_secs(600),
            |_, d| {
                if d < Duration::from_secs(10) {
                    Err("retry_every must be at least 10s: calling someone back at once is a nuisance".into())
                } else {
                    Ok(())
                }
            },
        );
        let max_attempts = o.max_attempts.unwrap_or(3);
        if !(1..=20).contains(&max_attempts) {
            c.err(p("max_attempts"), "max_attempts must be between 1 and 20");
        }
        jobs.push(OutboundJob {
            name: o.name.clone(),
            number: o.number.clone(),
            trunks: c.trunks(&p("trunks"), o.trunks.as_ref()),
            start,
            after,
            language,
            vars: o.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ring_timeout,
            retry_every,
            max_attempts,
            success: o
                .success
                .as_ref()
                .map(|s| (s.var.clone(), s.values.clone())),
            caller_id: None,
        });
    }
    jobs
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ivr::config::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    fn job(extra: &str) -> String {
        one_node("type = \"hangup\"")
            + &format!("\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"n\"\n{extra}")
    }

    #[test]
    fn outbound_job_with_defaults_is_accepted() {
        let ivr = accepted(&job(""));
        let j = &ivr.outbound[0];
        assert_eq!((j.name.as_str(), j.number.as_str()), ("j", "100"));
        assert_eq!(j.trunks, ["trunk-1", "trunk-2"]);
        assert_eq!(j.start, 0);
        assert_eq!(j.after, Duration::ZERO);
        assert_eq!(j.language, Lang::En);
        assert!(j.vars.is_empty());
        assert_eq!(j.ring_timeout, Duration::from_secs(30));
        assert_eq!(j.retry_every, Duration::from_secs(600));
        assert_eq!(j.max_attempts, 3);
        assert_eq!(j.success, None);
    }

    #[test]
    fn outbound_job_keeps_what_it_is_told() {
        let ivr = accepted(&job(
            "trunks = [\"trunk-2\"]\nafter = \"1m\"\nlanguage = \"zh\"\nvars = { order = \"1001\" }\nring_timeout = \"20s\"\nretry_every = \"10s\"\nmax_attempts = 20\nsuccess = { var = \"ok\", in = [\"1\", \"2\"] }",
        ));
        let j = &ivr.outbound[0];
        assert_eq!(j.trunks, ["trunk-2"]);
        assert_eq!(j.after, Duration::from_secs(60));
        assert_eq!(j.language, Lang::Zh);
        assert_eq!(j.vars, [("order".to_string(), "1001".to_string())]);
        assert_eq!(j.ring_timeout, Duration::from_secs(20));
        assert_eq!(j.retry_every, Duration::from_secs(10));
        assert_eq!(j.max_attempts, 20);
        assert_eq!(
            j.success,
            Some(("ok".to_string(), vec!["1".to_string(), "2".to_string()]))
        );
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_some());
    }

    #[test]
    fn outbound_job_names_must_be_unique() {
        let cfg = job("") + "\n[[outbound]]\nname = \"j\"\nnumber = \"101\"\nstart = \"n\"";
        assert_eq!(
            errors(&cfg),
            ["outbound[1].name: job name `j` must be unique, 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn outbound_number_that_cannot_be_dialled_is_refused() {
        let cfg = job("").replace("number = \"100\"", "number = \"10-0\"");
        assert_eq!(
            errors(&cfg),
            ["outbound[0].number: `10-0` is not a number that can be dialled"]
        );
    }

    #[test]
    fn outbound_start_at_unknown_node_is_refused() {
        let cfg = one_node("type = \"hangup\"")
            + "\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"x\"";
        assert_eq!(errors(&cfg), ["outbound[0].start: `x` is not a node"]);
    }

    #[test]
    fn outbound_language_that_is_unknown_is_refused() {
        assert_eq!(
            errors(&job("language = \"fr\"")),
            ["outbound[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn outbound_retry_sooner_than_ten_seconds_is_refused() {
        assert_eq!(
            errors(&job("retry_every = \"5s\"")),
            [
                "outbound[0].retry_every: retry_every must be at least 10s: calling someone back at once is a nuisance"
            ]
        );
    }

    #[test]
    fn outbound_attempts_out_of_range_are_refused() {
        for n in [0, 21] {
            assert_eq!(
                errors(&job(&format!("max_attempts = {n}"))),
                ["outbound[0].max_attempts: max_attempts must be between 1 and 20"]
            );
        }
    }

    #[test]
    fn outbound_delay_that_is_not_a_duration_is_refused() {
        let errs = errors(&job("after = \"later\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("outbound[0].after: `later` is not a duration ("),
            "{errs:?}"
        );
    }

    #[test]
    fn outbound_ring_time_out_of_range_is_refused() {
        assert_eq!(
            errors(&job("ring_timeout = \"0s\"")),
            ["outbound[0].ring_timeout: ring time 0s must be between 1s and 5m"]
        );
    }

    #[test]
    fn outbound_over_a_line_that_is_not_a_trunk_is_refused() {
        assert_eq!(
            errors(&job("trunks = [\"desk-1\"]")),
            ["outbound[0].trunks[0]: `desk-1` is a station line; numbers are dialled on trunks"]
        );
    }
}

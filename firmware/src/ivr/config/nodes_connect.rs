//! Checks of the nodes that hand the caller to a person: an ACD queue, a
//! transfer to a station or an outside number, or a conference room.

use std::time::Duration;

use super::checker::{Checker, NodeAt};
use super::flow::{Dest, NodeKind, Target};
use super::raw::{RawConference, RawQueue, RawTransfer};

/// The caller joins a `[conference.NAME]` room (its PIN asked first).
pub(super) fn conference(c: &mut Checker<'_>, at: &NodeAt<'_>, r: &RawConference) -> NodeKind {
    let on_refused = match &r.on_refused {
        Some(t) => c.target(&at.key("on_refused"), t),
        None => Target::Hangup,
    };
    for key in [
        "conference-pin",
        "conference-full",
        "conference-muted",
        "conference-unmuted",
        "invalid-option",
    ] {
        c.wanted
            .entry(format!("system:{key}"))
            .or_insert_with(|| at.key("room"));
    }
    let room = match c.rooms.iter().find(|x| x.name == r.room) {
        Some(room) => room.clone(),
        None => {
            c.err(
                at.key("room"),
                format!("`{}` is not a room under [conference]", r.room),
            );
            crate::media::conference::RoomCfg {
                name: r.room.clone(),
                number: String::new(),
                pin: None,
                max_parties: 2,
            }
        }
    };
    NodeKind::Conference { room, on_refused }
}

/// A wait in an `[acd]` queue, named by `queue` or by the node; loads the
/// queue's music on hold and position announcements.
pub(super) fn queue(c: &mut Checker<'_>, at: &NodeAt<'_>, q: &RawQueue) -> NodeKind {
    let qname = q.queue.clone().unwrap_or_else(|| at.name.to_string());
    let index = match c.acd.and_then(|a| a.queue(&qname)) {
        Some(i) => i,
        None => {
            // An `[acd]` with errors has reported them; its
            // queues are unknown, not missing.
            if !c.acd_failed {
                c.err(
                    if q.queue.is_some() {
                        at.key("queue")
                    } else {
                        at.path.clone()
                    },
                    format!("`{qname}` is not a queue under [acd.queue]"),
                );
            }
            0
        }
    };
    if let Some(qc) = c
        .acd
        .and_then(|a| a.queues.get(index))
        .filter(|qc| qc.name == qname)
    {
        if let Some(m) = &qc.moh {
            c.wanted
                .entry(format!("site:{m}"))
                .or_insert_with(|| format!("acd.queue.{qname}.moh"));
        }
        if qc.announce_every.is_some() {
            for f in ["you-are-number", "in-queue", "expected-wait", "minutes"] {
                c.wanted
                    .entry(format!("system:{f}"))
                    .or_insert_with(|| format!("acd.queue.{qname}.announce_every"));
            }
        }
    }
    NodeKind::Queue {
        queue: index,
        name: qname,
        announce: c.items(
            &at.key("announce"),
            q.announce.as_ref(),
            &["system:please-hold"],
        ),
        on_overflow: c.target(&at.key("on_overflow"), &q.on_overflow),
        after: q.after.as_ref().map(|a| c.target(&at.key("after"), a)),
    }
}

/// A transfer to one station, or to a number over trunks.
pub(super) fn transfer(c: &mut Checker<'_>, at: &NodeAt<'_>, t: &RawTransfer) -> NodeKind {
    let dest = match (&t.station, &t.number) {
        (Some(s), None) => {
            c.station(&at.key("station"), s);
            Dest::Stations(vec![s.clone()])
        }
        (None, Some(n)) => {
            if n.is_empty() || !n.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
                c.err(
                    at.key("number"),
                    format!("`{n}` is not a number that can be dialled (keys 0-9, *, #)"),
                );
            }
            Dest::External {
                number: n.clone(),
                trunks: c.trunks(&at.key("trunks"), t.trunks.as_ref()),
            }
        }
        _ => {
            c.err(
                at.path.clone(),
                "a transfer needs exactly one of `station` or `number`",
            );
            Dest::Stations(Vec::new())
        }
    };
    NodeKind::Connect {
        dest,
        announce: c.items(
            &at.key("announce"),
            t.announce.as_ref(),
            &["system:transferring"],
        ),
        ring_timeout: c.ring_time(
            &at.key("ring_timeout"),
            t.ring_timeout.as_ref(),
            Duration::from_secs(30),
        ),
        on_no_answer: c.target(&at.key("on_no_answer"), &t.on_no_answer),
        after: t.after.as_ref().map(|a| c.target(&at.key("after"), a)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ivr::config::testing::{accepted, errors, node, one_node};
    use crate::ivr::config::{Dest, Item, NodeKind, Target};
    use crate::ivr::say::Lang;

    #[test]
    fn queue_named_by_its_node_is_accepted() {
        let ivr = accepted(
            "[ivr]\nstart = \"support\"\n[ivr.node.support]\ntype = \"queue\"\non_overflow = \"hangup\"",
        );
        let NodeKind::Queue {
            queue,
            name,
            announce,
            on_overflow,
            after,
        } = node(&ivr, "support")
        else {
            panic!("not a queue")
        };
        assert_eq!((*queue, name.as_str()), (1, "support"));
        assert_eq!(announce, &[Item::Prompt("system:please-hold".into())]);
        assert_eq!((*on_overflow, *after), (Target::Hangup, None));
    }

    #[test]
    fn queue_loads_its_music_and_announcements() {
        let ivr = accepted(&one_node(
            "type = \"queue\"\nqueue = \"sales\"\nannounce = \"hello.wav\"\non_overflow = \"hangup\"\nafter = \"hangup\"",
        ));
        let NodeKind::Queue {
            queue,
            name,
            announce,
            after,
            ..
        } = node(&ivr, "n")
        else {
            panic!("not a queue")
        };
        assert_eq!((*queue, name.as_str()), (0, "sales"));
        assert_eq!(announce, &[Item::Prompt("site:hello.wav".into())]);
        assert_eq!(*after, Some(Target::Hangup));
        for key in ["site:moh.wav", "system:you-are-number", "system:minutes"] {
            assert!(ivr.prompts.get(Lang::En, key).is_some(), "{key}");
        }
    }

    #[test]
    fn queue_that_acd_does_not_have_is_refused() {
        let named = one_node("type = \"queue\"\nqueue = \"vip\"\non_overflow = \"hangup\"");
        assert_eq!(
            errors(&named),
            ["ivr.node.n.queue: `vip` is not a queue under [acd.queue]"]
        );
        let implied = one_node("type = \"queue\"\non_overflow = \"hangup\"");
        assert_eq!(
            errors(&implied),
            ["ivr.node.n: `n` is not a queue under [acd.queue]"]
        );
    }

    #[test]
    fn queue_of_an_acd_with_errors_is_not_reported_again() {
        // The [acd] fails for its unknown member and has no queue `vip`
        // either way: only its own error would be reported.
        let cfg = one_node("type = \"queue\"\nqueue = \"vip\"\non_overflow = \"hangup\"")
            + "\n[acd.queue.other]\nmembers = { nobody = 0 }";
        accepted(&cfg);
    }

    #[test]
    fn queue_music_that_is_missing_is_refused_at_the_queue() {
        let cfg = one_node("type = \"queue\"\nqueue = \"sales\"\non_overflow = \"hangup\"")
            + "\n[acd.agent.alice]\nstation = \"desk-1\"\n[acd.queue.sales]\nmembers = { alice = 0 }\nmoh = \"gone.wav\"";
        assert_eq!(
            errors(&cfg),
            [
                "acd.queue.sales.moh: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn queue_overflow_to_unknown_node_is_refused() {
        let cfg =
            one_node("type = \"queue\"\nqueue = \"sales\"\non_overflow = \"x\"\nafter = \"y\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.on_overflow: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.after: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    fn transfer(body: &str) -> String {
        one_node(&format!(
            "type = \"transfer\"\non_no_answer = \"hangup\"\n{body}"
        ))
    }

    #[test]
    fn transfer_to_a_station_is_accepted() {
        let ivr = accepted(&transfer("station = \"desk-2\""));
        let NodeKind::Connect {
            dest,
            announce,
            ring_timeout,
            on_no_answer,
            after,
        } = node(&ivr, "n")
        else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::Stations(s) if s == &["desk-2"]));
        assert_eq!(announce, &[Item::Prompt("system:transferring".into())]);
        assert_eq!(*ring_timeout, Duration::from_secs(30));
        assert_eq!((*on_no_answer, *after), (Target::Hangup, None));
    }

    #[test]
    fn transfer_to_a_number_dials_on_every_trunk_unless_told() {
        let ivr = accepted(&transfer("number = \"0105551234\"\nring_timeout = \"45s\""));
        let NodeKind::Connect {
            dest, ring_timeout, ..
        } = node(&ivr, "n")
        else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::External { number, trunks }
            if number == "0105551234" && trunks == &["trunk-1", "trunk-2"]));
        assert_eq!(*ring_timeout, Duration::from_secs(45));
        let ivr = accepted(&transfer("number = \"*99#\"\ntrunks = [\"trunk-2\"]"));
        let NodeKind::Connect { dest, .. } = node(&ivr, "n") else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::External { trunks, .. } if trunks == &["trunk-2"]));
    }

    #[test]
    fn transfer_to_a_line_that_is_not_a_station_is_refused() {
        assert_eq!(
            errors(&transfer("station = \"desk-9\"")),
            ["ivr.node.n.station: `desk-9` is not a line defined in this file"]
        );
        assert_eq!(
            errors(&transfer("station = \"trunk-1\"")),
            ["ivr.node.n.station: `trunk-1` is a trunk line; calls are connected to station lines"]
        );
    }

    #[test]
    fn transfer_to_a_number_that_cannot_be_dialled_is_refused() {
        assert_eq!(
            errors(&transfer("number = \"555-1234\"")),
            ["ivr.node.n.number: `555-1234` is not a number that can be dialled (keys 0-9, *, #)"]
        );
    }

    #[test]
    fn transfer_over_lines_that_are_not_trunks_is_refused() {
        assert_eq!(
            errors(&transfer(
                "number = \"100\"\ntrunks = [\"trunk-9\", \"desk-1\"]"
            )),
            [
                "ivr.node.n.trunks[0]: `trunk-9` is not a line defined in this file",
                "ivr.node.n.trunks[1]: `desk-1` is a station line; numbers are dialled on trunks",
            ]
        );
    }

    #[test]
    fn transfer_needs_exactly_one_of_station_or_number() {
        let msg = ["ivr.node.n: a transfer needs exactly one of `station` or `number`"];
        assert_eq!(errors(&transfer("")), msg);
        assert_eq!(
            errors(&transfer("station = \"desk-1\"\nnumber = \"100\"")),
            msg
        );
    }

    #[test]
    fn transfer_ring_time_out_of_range_is_refused() {
        assert_eq!(
            errors(&transfer("station = \"desk-1\"\nring_timeout = \"6m\"")),
            ["ivr.node.n.ring_timeout: ring time 6m must be between 1s and 5m"]
        );
    }

    #[test]
    fn transfer_to_unknown_node_is_refused() {
        let cfg = one_node(
            "type = \"transfer\"\nstation = \"desk-1\"\non_no_answer = \"x\"\nafter = \"y\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.on_no_answer: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.after: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }
}

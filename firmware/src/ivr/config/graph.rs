//! The flow as a graph: every node reached from some start, and every
//! reached node able to end the call.
//!
//! Unknown targets were resolved to hangup before this runs, so the graph
//! is whole even when other errors were found, and every problem is
//! reported at once.

use super::checker::Checker;
use super::flow::{Node, NodeId, NodeKind, Target};

/// Where a node can go next.
fn targets(kind: &NodeKind) -> Vec<Target> {
    match kind {
        NodeKind::Menu(m) => {
            let mut v: Vec<Target> = m.options.iter().map(|(_, t)| *t).collect();
            v.extend([m.on_max_failures, m.on_max_timeouts]);
            v
        }
        NodeKind::Collect(k) => vec![k.next, k.on_failure],
        NodeKind::Play { next, .. }
        | NodeKind::ProductCheck { next, .. }
        | NodeKind::OrderStatus { next, .. }
        | NodeKind::Notify { next, .. }
        | NodeKind::Voicemail { next, .. }
        | NodeKind::Survey { next, .. }
        | NodeKind::Callback { next, .. }
        | NodeKind::Set { next, .. } => vec![*next],
        NodeKind::Branch { cases, default } => {
            let mut v: Vec<Target> = cases.iter().map(|(_, t)| *t).collect();
            v.push(*default);
            v
        }
        NodeKind::Queue {
            on_overflow: on_no_answer,
            after,
            ..
        }
        | NodeKind::Connect {
            on_no_answer,
            after,
            ..
        } => {
            // A connected call ends when it is bridged (or goes to `after`).
            let mut v = vec![*on_no_answer, Target::Hangup];
            v.extend(after.iter().copied());
            v
        }
        NodeKind::Hangup { .. } => vec![Target::Hangup],
        NodeKind::Conference { on_refused, .. } => vec![*on_refused, Target::Hangup],
    }
}

/// Unreachable nodes and loops with no way out, as config errors.
pub(super) fn check(nodes: &[Node], entries: &[NodeId], c: &mut Checker<'_>) {
    let n = nodes.len();
    let edges: Vec<Vec<Target>> = nodes.iter().map(|nd| targets(&nd.kind)).collect();
    // Reachability from every start. `top` leads back to a start, which is
    // already reached; `back` only returns to a menu already visited.
    let mut seen = vec![false; n];
    let mut stack: Vec<NodeId> = entries.to_vec();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        for t in &edges[i] {
            if let Target::Node(j) = *t {
                stack.push(j);
            }
        }
    }
    for (i, nd) in nodes.iter().enumerate() {
        if !seen[i] {
            c.err(
                format!("ivr.node.{}", nd.name),
                format!(
                    "node `{}` is never reached: no start, route, outbound job or other node leads to it",
                    nd.name
                ),
            );
        }
    }
    // Nodes that can end the call: a hangup, or `back` (the flow came from
    // a menu the caller can leave).
    let mut can_end = vec![false; n];
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if can_end[i] {
                continue;
            }
            let ends = edges[i].iter().any(|t| match *t {
                Target::Hangup | Target::Back => true,
                Target::Node(j) => can_end[j],
                Target::Top | Target::Repeat => false,
            });
            if ends {
                can_end[i] = true;
                changed = true;
            }
        }
    }
    // Queues overflowing into each other with no other way out: a caller
    // nobody can take would bounce between them for ever.
    for (i, nd) in nodes.iter().enumerate() {
        let mut cur = i;
        let mut hops = 0;
        while let NodeKind::Queue {
            on_overflow: Target::Node(next),
            ..
        } = &nodes[cur].kind
        {
            cur = *next;
            hops += 1;
            if cur == i {
                c.err(
                    format!("ivr.node.{}.on_overflow", nd.name),
                    format!(
                        "queue node `{}` overflows back to itself through other queues; end the chain in voicemail, a callback, a transfer or hangup",
                        nd.name
                    ),
                );
                break;
            }
            if hops > nodes.len() {
                break;
            }
        }
    }
    for (i, nd) in nodes.iter().enumerate() {
        if seen[i] && !can_end[i] {
            c.err(
                format!("ivr.node.{}", nd.name),
                format!(
                    "node `{}` is in a loop with no way out: nothing it leads to ever hangs up, connects or leaves (add an exit such as on_max_failures = \"hangup\")",
                    nd.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ivr::config::testing::{accepted, errors};

    #[test]
    fn node_nothing_leads_to_is_refused() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"hangup\"\n[ivr.node.b]\ntype = \"hangup\"";
        assert_eq!(
            errors(cfg),
            [
                "ivr.node.b: node `b` is never reached: no start, route, outbound job or other node leads to it"
            ]
        );
    }

    #[test]
    fn nodes_reached_by_a_route_or_a_job_are_reached() {
        let cfg = "[ivr]\nstart = \"a\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"b\"\n[ivr.node.a]\ntype = \"hangup\"\n[ivr.node.b]\ntype = \"hangup\"\n[ivr.node.c]\ntype = \"hangup\"\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"c\"";
        accepted(cfg);
    }

    #[test]
    fn loop_with_no_way_out_is_refused() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"b\"\n[ivr.node.b]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"top\"";
        let msg = |n: &str| {
            format!(
                "ivr.node.{n}: node `{n}` is in a loop with no way out: nothing it leads to ever hangs up, connects or leaves (add an exit such as on_max_failures = \"hangup\")"
            )
        };
        assert_eq!(errors(cfg), [msg("a"), msg("b")]);
    }

    #[test]
    fn back_is_a_way_out() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"back\"";
        accepted(cfg);
    }

    #[test]
    fn queues_overflowing_into_each_other_are_refused() {
        let cfg = "[ivr]\nstart = \"sales\"\n[ivr.node.sales]\ntype = \"queue\"\non_overflow = \"support\"\n[ivr.node.support]\ntype = \"queue\"\non_overflow = \"sales\"";
        let msg = |n: &str| {
            format!(
                "ivr.node.{n}.on_overflow: queue node `{n}` overflows back to itself through other queues; end the chain in voicemail, a callback, a transfer or hangup"
            )
        };
        assert_eq!(errors(cfg), [msg("sales"), msg("support")]);
    }
}

//! Checks of the self-service nodes: product and order lookups,
//! voicemail and callback requests.

use std::collections::HashMap;
use std::time::Duration;

use super::checker::{Checker, NodeAt, node_name_ok};
use super::flow::NodeKind;
use super::raw::{RawCallback, RawOrderStatus, RawProductCheck, RawVoicemail};

/// The anti-counterfeit check: needs the products table and says its
/// answer with system prompts.
pub(super) fn product_check(
    c: &mut Checker<'_>,
    at: &NodeAt<'_>,
    pc: &RawProductCheck,
) -> NodeKind {
    // What the check says, whatever the answer.
    for name in [
        "genuine-first",
        "genuine-repeat",
        "times",
        "first-checked",
        "not-found",
    ] {
        c.wanted
            .entry(format!("system:{name}"))
            .or_insert_with(|| at.path.clone());
    }
    if !c.lookups.has_products() {
        c.err(
            at.path.clone(),
            "a product_check needs `products` under [ivr.lookups]",
        );
    }
    NodeKind::ProductCheck {
        var: pc.var.clone(),
        next: c.target(&at.key("next"), &pc.next),
    }
}

/// An order's status said from the orders table: every status the table
/// holds needs something to say.
pub(super) fn order_status(c: &mut Checker<'_>, at: &NodeAt<'_>, os: &RawOrderStatus) -> NodeKind {
    for name in ["order-status", "order-not-found"] {
        c.wanted
            .entry(format!("system:{name}"))
            .or_insert_with(|| at.path.clone());
    }
    if !c.lookups.has_orders() {
        c.err(
            at.path.clone(),
            "an order_status needs `orders` under [ivr.lookups]",
        );
    }
    let mut statuses = HashMap::new();
    for (s, prompts) in &os.statuses {
        statuses.insert(
            s.clone(),
            c.items(&at.key(&format!("statuses.{s}")), Some(prompts), &[]),
        );
    }
    for (line, s) in c.lookups.order_statuses() {
        if !statuses.contains_key(s) {
            c.err(
                at.key("statuses"),
                format!("order status `{s}` (orders table line {line}) has no entry here, so a caller would hear nothing"),
            );
        }
    }
    NodeKind::OrderStatus {
        var: os.var.clone(),
        statuses,
        next: c.target(&at.key("next"), &os.next),
    }
}

/// A message recorded into a mailbox.
pub(super) fn voicemail(c: &mut Checker<'_>, at: &NodeAt<'_>, v: &RawVoicemail) -> NodeKind {
    NodeKind::Voicemail {
        mailbox: {
            // The mailbox names a folder under the data directory.
            if !node_name_ok(&v.mailbox) {
                c.err(
                    at.key("mailbox"),
                    format!(
                        "mailbox `{}` must be 1-64 letters, digits, `-` or `_`",
                        v.mailbox
                    ),
                );
            }
            v.mailbox.clone()
        },
        prompt: c.items(
            &at.key("prompt"),
            v.prompt.as_ref(),
            &["system:leave-message", "system:beep"],
        ),
        max_length: c.checked_duration(
            &at.key("max_length"),
            v.max_length.as_ref(),
            Duration::from_secs(120),
            |_, d| {
                if d >= Duration::from_secs(1) && d <= Duration::from_secs(600) {
                    Ok(())
                } else {
                    Err("max_length must be between 1s and 10m".into())
                }
            },
        ),
        saved: c.items(
            &at.key("saved"),
            v.saved.as_ref(),
            &["system:message-saved"],
        ),
        next: c.target(&at.key("next"), &v.next),
    }
}

/// A request to be called back, for a queue.
pub(super) fn callback(c: &mut Checker<'_>, at: &NodeAt<'_>, cb: &RawCallback) -> NodeKind {
    NodeKind::Callback {
        queue: cb.queue.clone().unwrap_or_else(|| at.name.to_string()),
        prompt: c.items(
            &at.key("prompt"),
            cb.prompt.as_ref(),
            &["system:callback-requested"],
        ),
        next: c.target(&at.key("next"), &cb.next),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ivr::config::testing::{accepted, errors, node, one_node};
    use crate::ivr::config::{Item, NodeKind, Target};

    fn with_lookups(lookups: &str, body: &str) -> String {
        format!("[ivr]\nstart = \"n\"\n[ivr.lookups]\n{lookups}\n[ivr.node.n]\n{body}")
    }

    #[test]
    fn product_check_is_accepted_with_a_products_table() {
        let ivr = accepted(&with_lookups(
            "products = \"products.csv\"",
            "type = \"product_check\"\nvar = \"code\"\nnext = \"hangup\"",
        ));
        let NodeKind::ProductCheck { var, next } = node(&ivr, "n") else {
            panic!("not a product check")
        };
        assert_eq!((var.as_str(), *next), ("code", Target::Hangup));
        assert!(
            ivr.prompts
                .get(crate::ivr::say::Lang::En, "system:genuine-first")
                .is_some()
        );
    }

    #[test]
    fn product_check_without_a_products_table_is_refused() {
        let cfg = one_node("type = \"product_check\"\nvar = \"code\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n: a product_check needs `products` under [ivr.lookups]"]
        );
    }

    #[test]
    fn order_status_is_accepted_with_every_status_said() {
        let ivr = accepted(&with_lookups(
            "orders = \"orders.csv\"",
            "type = \"order_status\"\nvar = \"order\"\nstatuses = { shipped = \"hello.wav\", pending = [\"bye.wav\", \"{date:eta}\"] }\nnext = \"hangup\"",
        ));
        let NodeKind::OrderStatus {
            var,
            statuses,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not an order status")
        };
        assert_eq!((var.as_str(), *next), ("order", Target::Hangup));
        assert_eq!(statuses["shipped"], [Item::Prompt("site:hello.wav".into())]);
        assert_eq!(statuses["pending"].len(), 2);
    }

    #[test]
    fn order_status_without_an_orders_table_is_refused() {
        let cfg =
            one_node("type = \"order_status\"\nvar = \"order\"\nstatuses = {}\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n: an order_status needs `orders` under [ivr.lookups]"]
        );
    }

    #[test]
    fn order_status_missing_a_status_of_the_table_is_refused() {
        let cfg = with_lookups(
            "orders = \"orders.csv\"",
            "type = \"order_status\"\nvar = \"order\"\nstatuses = { shipped = \"hello.wav\" }\nnext = \"hangup\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.statuses: order status `pending` (orders table line 3) has no entry here, so a caller would hear nothing"
            ]
        );
    }

    #[test]
    fn voicemail_with_defaults_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"voicemail\"\nmailbox = \"sales\"\nnext = \"hangup\"",
        ));
        let NodeKind::Voicemail {
            mailbox,
            prompt,
            max_length,
            saved,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a voicemail")
        };
        assert_eq!(mailbox, "sales");
        assert_eq!(
            prompt,
            &[
                Item::Prompt("system:leave-message".into()),
                Item::Prompt("system:beep".into())
            ]
        );
        assert_eq!(*max_length, Duration::from_secs(120));
        assert_eq!(saved, &[Item::Prompt("system:message-saved".into())]);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn voicemail_mailbox_that_is_not_a_folder_name_is_refused() {
        let cfg = one_node("type = \"voicemail\"\nmailbox = \"../x\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.mailbox: mailbox `../x` must be 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn voicemail_length_out_of_range_is_refused() {
        for len in ["0s", "11m"] {
            let cfg = one_node(&format!(
                "type = \"voicemail\"\nmailbox = \"m\"\nmax_length = \"{len}\"\nnext = \"hangup\""
            ));
            assert_eq!(
                errors(&cfg),
                ["ivr.node.n.max_length: max_length must be between 1s and 10m"]
            );
        }
    }

    #[test]
    fn callback_queue_defaults_to_the_node_name() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[ivr.node.n]\ntype = \"callback\"\nnext = \"m\"\n[ivr.node.m]\ntype = \"callback\"\nqueue = \"sales\"\nprompt = \"hello.wav\"\nnext = \"hangup\"",
        );
        let NodeKind::Callback {
            queue,
            prompt,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a callback")
        };
        assert_eq!(queue, "n");
        assert_eq!(prompt, &[Item::Prompt("system:callback-requested".into())]);
        assert!(matches!(next, Target::Node(_)));
        let NodeKind::Callback { queue, prompt, .. } = node(&ivr, "m") else {
            panic!("not a callback")
        };
        assert_eq!(queue, "sales");
        assert_eq!(prompt, &[Item::Prompt("site:hello.wav".into())]);
    }

    #[test]
    fn callback_then_unknown_node_is_refused() {
        let cfg = one_node("type = \"callback\"\nnext = \"x\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.next: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }
}

//! Where each call in progress is right now, for the people watching the
//! box (the web console's wallboard and agent desk): callers still in the
//! IVR with the node they are at, calls the box placed, and campaign
//! contacts offered to an agent in preview. The queues' calls are the
//! ACD's own (its figures); this is what the ACD does not see.
//!
//! Whoever starts a call adds it and keeps the [`OnBoard`] guard for the
//! call's length: the entry goes when the guard drops, so a call that ends
//! any way (hang-up, failure, a panic) leaves the board. Nothing here is
//! stored; a restart starts with an empty board, as it starts with no
//! calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// One call as the board shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct InflightCall {
    /// The call's id (its record's).
    pub call_id: String,
    /// `inbound`, `outbound` (the box placed it) or `preview` (a campaign
    /// contact offered to an agent, not dialled yet).
    pub kind: &'static str,
    /// The line it is on (a trunk; the agent's station for a preview).
    pub line: String,
    /// The other party's number.
    pub caller: Option<String>,
    /// Their name, from the site's contacts or the campaign's list.
    pub caller_name: Option<String>,
    /// The number dialled.
    pub dialled: Option<String>,
    /// The IVR node the call is at; `None` before the IVR took it.
    pub node: Option<String>,
    /// When it started, wall-clock ms.
    pub since_ms: i64,
    /// When it was answered (a preview: when the agent took it).
    pub answered_ms: Option<i64>,
    /// A preview's agent.
    pub agent: Option<String>,
    /// The campaign, for its calls.
    pub campaign: Option<String>,
    /// A preview contact's fields from the campaign's list.
    pub fields: BTreeMap<String, String>,
}

/// The board; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Inflight {
    calls: Arc<Mutex<HashMap<String, InflightCall>>>,
}

/// Keeps a call on the board until dropped.
#[derive(Debug)]
#[must_use = "the call leaves the board when this drops"]
pub struct OnBoard {
    board: Inflight,
    id: String,
}

impl Drop for OnBoard {
    fn drop(&mut self) {
        self.board.lock().remove(&self.id);
    }
}

impl Inflight {
    /// An empty board.
    pub fn new() -> Inflight {
        Inflight::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, InflightCall>> {
        // A panic while holding the lock left a whole map behind: the
        // board is only ever a view, so it is used as it is.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `call` on the board until the guard drops.
    pub fn begin(&self, call: InflightCall) -> OnBoard {
        let id = call.call_id.clone();
        self.lock().insert(id.clone(), call);
        OnBoard {
            board: self.clone(),
            id,
        }
    }

    /// The call reached IVR node `node` (a call not on the board is left
    /// off it).
    pub fn at_node(&self, call_id: &str, node: &str) {
        if let Some(c) = self.lock().get_mut(call_id) {
            c.node = Some(node.to_string());
        }
    }

    /// The call was answered at `at_ms`.
    pub fn answered(&self, call_id: &str, at_ms: i64) {
        if let Some(c) = self.lock().get_mut(call_id) {
            c.answered_ms = Some(at_ms);
        }
    }

    /// Every call on the board, oldest first.
    pub fn now(&self) -> Vec<InflightCall> {
        let mut v: Vec<InflightCall> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| (a.since_ms, &a.call_id).cmp(&(b.since_ms, &b.call_id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, since_ms: i64) -> InflightCall {
        InflightCall {
            call_id: id.into(),
            kind: "inbound",
            line: "trunk-1".into(),
            since_ms,
            ..InflightCall::default()
        }
    }

    #[test]
    fn a_call_is_on_the_board_while_its_guard_lives_and_follows_its_nodes() {
        let b = Inflight::new();
        let second = b.begin(call("b", 20));
        let first = b.begin(call("a", 10));
        b.at_node("a", "menu");
        b.at_node("gone", "menu");
        b.answered("b", 25);
        let now = b.now();
        assert_eq!(
            now.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(now[0].node.as_deref(), Some("menu"));
        assert_eq!(now[1].node, None);
        assert_eq!((now[0].answered_ms, now[1].answered_ms), (None, Some(25)));
        drop(first);
        assert_eq!(b.now().len(), 1);
        drop(second);
        assert!(b.now().is_empty());
    }

    #[test]
    fn a_call_that_panics_still_leaves_the_board() {
        let b = Inflight::new();
        let b2 = b.clone();
        let r = std::thread::spawn(move || {
            let _on = b2.begin(call("x", 1));
            panic!("the call failed");
        })
        .join();
        assert!(r.is_err());
        assert!(b.now().is_empty());
    }
}

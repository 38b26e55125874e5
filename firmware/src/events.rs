//! Live events for headquarters: agent state changes, alarms, queue events,
//! the IVR's notify actions and diversion flags, as they happen.
//!
//! Whoever produces one calls [`Events::emit`]; the fleet link publishes them
//! while it is connected. Events are not stored: a box offline drops them,
//! and everything that must not be lost is also a record in the outbox. The
//! channel is a bounded broadcast, so a slow or absent reader never holds up
//! a call: the oldest events are overwritten instead.

use tokio::sync::broadcast;

use crate::clock::Stamp;

/// How many events wait for a slow reader before the oldest are dropped.
const CAPACITY: usize = 1024;

/// One live event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `agent`, `alarm`, `queue`, `notify` or `lookup` (the topic's last
    /// level).
    pub kind: &'static str,
    /// When it happened.
    pub at: Stamp,
    /// What happened (docs/mqtt.md, "Events").
    pub data: serde_json::Value,
}

/// Cheap handle to the event channel. A clone sends on the same channel.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A channel nobody listens to yet.
    pub fn new() -> Events {
        Events {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Publishes an event to whoever listens; never blocks, callable from
    /// any thread.
    pub fn emit(&self, kind: &'static str, at: Stamp, data: serde_json::Value) {
        // No receiver is not an error: the box runs without an uplink.
        let _ = self.tx.send(Event { kind, at, data });
    }

    /// A receiver of every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

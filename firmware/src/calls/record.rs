//! One call's record, written once for every kind of call: started →
//! answered → what the flow did → ended. Inbound calls, outbound jobs,
//! originated calls and callbacks all go through [`CallLog`], so a record
//! has the same shape whoever placed the call.

use callbox_hal::HangupCause;

use crate::clock::Clock;
use crate::store::{
    CallEnd, CallFlow, CallStart, Direction, Disposition, Side, StoreHandle, StoreMsg,
};

/// The record of one call in progress.
#[derive(Debug)]
pub struct CallLog {
    store: StoreHandle,
    clock: Clock,
    id: String,
    /// Whether `answered` and `hangup` also go to the call's event log
    /// (inbound calls: the event log is the caller's journey).
    journey: bool,
}

/// Where a call goes, for its first record.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The trunk it arrived on or was dialled on (none for an internal
    /// call).
    pub trunk_line: Option<String>,
    /// Calling number.
    pub caller: Option<String>,
    /// Dialled number.
    pub dialled: Option<String>,
    /// The station an agent placed it from.
    pub station: Option<String>,
    /// The caller's name (contacts, or the agent who placed it).
    pub caller_name: Option<String>,
}

impl CallLog {
    /// Records that call `id` started now.
    pub async fn start(store: &StoreHandle, clock: &Clock, id: &str, placed: Placed) -> CallLog {
        store
            .send(StoreMsg::CallStarted(CallStart {
                id: id.to_string(),
                direction: placed.direction,
                trunk_line: placed.trunk_line,
                caller: placed.caller,
                dialled: placed.dialled,
                station: placed.station,
                caller_name: placed.caller_name,
                at: clock.now(),
            }))
            .await;
        CallLog {
            store: store.clone(),
            clock: clock.clone(),
            id: id.to_string(),
            journey: placed.direction == Direction::Inbound,
        }
    }

    /// The call's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The number the caller dialled, learnt after the call arrived.
    pub async fn dialled(&self, dialled: &str) {
        self.store
            .send(StoreMsg::CallDialled {
                id: self.id.clone(),
                dialled: dialled.to_string(),
            })
            .await;
    }

    /// Records that the call was answered now.
    pub async fn answered(&self) {
        let at = self.clock.now();
        self.store
            .send(StoreMsg::CallAnswered {
                id: self.id.clone(),
                at,
            })
            .await;
        if self.journey {
            self.store
                .send(StoreMsg::Event {
                    call_id: self.id.clone(),
                    at,
                    event: "answered",
                    data: serde_json::json!({}),
                })
                .await;
        }
    }

    /// Records what the call's flow did (before it ends).
    pub async fn flow(&self, flow: CallFlow) {
        self.store.send(StoreMsg::CallFlow(flow)).await;
    }

    /// Records that the call ended now, and how.
    pub async fn end(self, disposition: Disposition, cause: HangupCause, side: Side) {
        let at = self.clock.now();
        if self.journey {
            self.store
                .send(StoreMsg::Event {
                    call_id: self.id.clone(),
                    at,
                    event: "hangup",
                    data: serde_json::json!({
                        "disposition": disposition.as_str(),
                        "cause": cause.to_string(),
                        "side": side,
                    }),
                })
                .await;
        }
        self.store
            .send(StoreMsg::CallEnded(CallEnd {
                id: self.id,
                at,
                disposition,
                cause,
                side,
            }))
            .await;
    }
}

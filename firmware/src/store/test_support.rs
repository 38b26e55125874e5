//! Builders the store's unit tests share.

use std::path::Path;

use super::*;
use crate::clock::Stamp;

pub(crate) fn stamp(ms: i64) -> Stamp {
    Stamp {
        wall_ms: ms,
        mono_ms: ms,
        synced: true,
    }
}

pub(crate) fn call(id: &str, ms: i64) -> StoreMsg {
    StoreMsg::CallStarted(CallStart {
        id: id.into(),
        direction: Direction::Inbound,
        trunk_line: Some("t1".into()),
        station: None,
        caller_name: None,
        caller: Some("1001".into()),
        dialled: None,
        at: stamp(ms),
    })
}

pub(super) fn finished(
    id: &str,
    call_id: &str,
    started: Option<Stamp>,
    end_ms: i64,
) -> RecordingEnd {
    RecordingEnd {
        id: id.into(),
        call_id: call_id.into(),
        kind: "call".into(),
        file: format!("recordings/{id}.wav"),
        format: "wav".into(),
        channels: 2,
        started,
        at: stamp(end_ms),
        state: "complete",
        size: 64_044,
        duration_ms: 4000,
        paused_ms: 1000,
        pauses: vec![(1000, 2000)],
        sha256: Some("ab".repeat(32)),
        encrypted: false,
        error: None,
    }
}

pub(super) fn started(id: &str, call_id: &str, ms: i64) -> StoreMsg {
    StoreMsg::RecordingStarted {
        id: id.into(),
        call_id: call_id.into(),
        kind: "call",
        file: format!("recordings/{id}.wav"),
        format: "wav",
        channels: 2,
        at: stamp(ms),
    }
}

pub(super) fn rows_of(dir: &Path, stream: &str) -> Vec<serde_json::Value> {
    read_table(dir, "outbox")
        .unwrap()
        .into_iter()
        .filter(|r| r["stream"] == stream)
        .collect()
}

pub(crate) fn outbox_rows(dir: &Path, stream: &str) -> Vec<serde_json::Value> {
    read_table(dir, "outbox")
        .unwrap()
        .into_iter()
        .filter(|r| r["stream"] == stream)
        .map(|r| r["payload"].clone())
        .collect()
}

impl RecordingEnd {
    pub(super) fn into_msg(self) -> StoreMsg {
        StoreMsg::RecordingFinished(self)
    }
}

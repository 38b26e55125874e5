//! Trunks an emergency call may take from a call in progress, when the
//! site says so (`[dialplan] emergency_preempt`) and no trunk is free: the
//! callers' calls on trunks register here for their length; an agent's
//! emergency call ends the newest of them (its record says `preempted`)
//! and dials on the trunk it frees.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Preemption {
    calls: Arc<Mutex<HashMap<String, Carried>>>,
}

#[derive(Debug)]
struct Carried {
    stop: CallStop,
    since: Instant,
}

/// How a call on a trunk is ended early: its own stop token (a child of
/// the daemon's), and whether it was for an emergency.
#[derive(Debug, Clone)]
pub struct CallStop {
    /// Cancelled when the daemon stops or the call is preempted.
    pub token: CancellationToken,
    preempted: Arc<AtomicBool>,
}

impl CallStop {
    /// Whether the call was ended for an emergency call.
    pub fn preempted(&self) -> bool {
        self.preempted.load(Ordering::Relaxed)
    }
}

impl Preemption {
    /// A call starts on `trunk`; `shutdown` still ends it too.
    pub fn carrying(&self, trunk: &str, shutdown: &CancellationToken) -> CallStop {
        let stop = CallStop {
            token: shutdown.child_token(),
            preempted: Arc::new(AtomicBool::new(false)),
        };
        let carried = Carried {
            stop: stop.clone(),
            since: Instant::now(),
        };
        self.lock().insert(trunk.to_string(), carried);
        stop
    }

    /// The call on `trunk` is over.
    pub fn done(&self, trunk: &str) {
        self.lock().remove(trunk);
    }

    /// Ends the newest call on one of `trunks` for an emergency call; the
    /// trunk it is on, or `None` when none of them carries a call that
    /// may be ended.
    pub fn preempt_one(&self, trunks: &[String]) -> Option<String> {
        let mut calls = self.lock();
        let trunk = calls
            .iter()
            .filter(|(t, c)| trunks.contains(t) && !c.stop.preempted())
            .max_by_key(|(_, c)| c.since)
            .map(|(t, _)| t.clone())?;
        let c = calls.remove(&trunk)?;
        c.stop.preempted.store(true, Ordering::Relaxed);
        c.stop.token.cancel();
        Some(trunk)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Carried>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_newest_call_on_the_trunks_given_is_ended() {
        let p = Preemption::default();
        let shutdown = CancellationToken::new();
        let a = p.carrying("t1", &shutdown);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let b = p.carrying("t2", &shutdown);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let c = p.carrying("t3", &shutdown);
        let among = ["t1".to_string(), "t2".to_string()];
        assert_eq!(p.preempt_one(&among).as_deref(), Some("t2"));
        assert!(b.preempted() && b.token.is_cancelled());
        assert!(!a.token.is_cancelled() && !c.token.is_cancelled());
        assert_eq!(p.preempt_one(&among).as_deref(), Some("t1"));
        assert_eq!(p.preempt_one(&among), None);
        p.done("t3");
        assert_eq!(p.preempt_one(&["t3".to_string()]), None);
        // The daemon stopping still ends them.
        shutdown.cancel();
        assert!(c.token.is_cancelled() && !c.preempted());
    }
}

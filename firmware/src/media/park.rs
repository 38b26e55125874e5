//! The park lot: callers an agent parked, by slot, until a station takes
//! them. The parked caller's own call task keeps the caller (on hold); a
//! station that dials the slot lends its port to that task, which bridges
//! the two and hands the port back when the call ends.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::lines::Lease;

enum Msg<L> {
    Park {
        slots: Vec<String>,
        to: mpsc::Sender<Lease<L>>,
        reply: oneshot::Sender<Option<String>>,
    },
    Unpark {
        slot: String,
    },
    Take {
        slot: String,
        lease: Lease<L>,
        reply: oneshot::Sender<Result<(), Lease<L>>>,
    },
}

/// Handle to the park lot; cheap to clone. The actor ends with the last
/// handle.
#[derive(Debug)]
pub struct ParkLot<L> {
    tx: mpsc::Sender<Msg<L>>,
}

impl<L> Clone for ParkLot<L> {
    fn clone(&self) -> Self {
        ParkLot {
            tx: self.tx.clone(),
        }
    }
}

/// A caller in a slot: stations that take the call arrive here.
#[derive(Debug)]
pub struct Parked<L> {
    /// The slot's number.
    pub slot: String,
    /// Leases of the station that took the call.
    pub taken: mpsc::Receiver<Lease<L>>,
}

impl<L: Send + 'static> ParkLot<L> {
    /// Starts the lot on `tracker`.
    pub fn spawn(tracker: &tokio_util::task::TaskTracker) -> ParkLot<L> {
        let (tx, mut rx) = mpsc::channel::<Msg<L>>(16);
        tracker.spawn(async move {
            let mut slots: HashMap<String, mpsc::Sender<Lease<L>>> = HashMap::new();
            while let Some(m) = rx.recv().await {
                match m {
                    Msg::Park {
                        slots: free,
                        to,
                        reply,
                    } => {
                        // A slot whose caller's task is gone is free again.
                        slots.retain(|_, t| !t.is_closed());
                        let slot = free.into_iter().find(|s| !slots.contains_key(s));
                        if let Some(s) = &slot {
                            slots.insert(s.clone(), to);
                        }
                        let _ = reply.send(slot);
                    }
                    Msg::Unpark { slot } => {
                        slots.remove(&slot);
                    }
                    Msg::Take { slot, lease, reply } => {
                        let r = match slots.remove(&slot) {
                            Some(to) => to.try_send(lease).map_err(|e| match e {
                                mpsc::error::TrySendError::Full(l)
                                | mpsc::error::TrySendError::Closed(l) => l,
                            }),
                            None => Err(lease),
                        };
                        let _ = reply.send(r);
                    }
                }
            }
        });
        ParkLot { tx }
    }

    /// Parks a caller on the first of `slots` that is free (`None`: all
    /// taken, or the box is stopping).
    pub async fn park(&self, slots: &[String]) -> Option<Parked<L>> {
        let (to, taken) = mpsc::channel(1);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Park {
                slots: slots.to_vec(),
                to,
                reply,
            })
            .await
            .ok()?;
        let slot = rx.await.ok()??;
        Some(Parked { slot, taken })
    }

    /// The caller leaves the slot (rung back, hung up).
    pub async fn unpark(&self, slot: &str) {
        let _ = self
            .tx
            .send(Msg::Unpark {
                slot: slot.to_string(),
            })
            .await;
    }

    /// A station takes the call in `slot`: its port goes to the parked
    /// caller's task. `Err` gives the lease back when the slot is empty.
    pub async fn take(&self, slot: &str, lease: Lease<L>) -> Result<(), Lease<L>> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Take {
            slot: slot.to_string(),
            lease,
            reply,
        };
        if let Err(mpsc::error::SendError(Msg::Take { lease, .. })) = self.tx.send(msg).await {
            return Err(lease);
        }
        // The actor always answers while it runs; when it is gone the lease
        // went with it and the port back to its watcher.
        rx.await.unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_handed_out_in_order_taken_once_and_freed() {
        let tracker = tokio_util::task::TaskTracker::new();
        let lot: ParkLot<()> = ParkLot::spawn(&tracker);
        let slots: Vec<String> = vec!["701".into(), "702".into()];
        let a = lot.park(&slots).await.unwrap();
        let b = lot.park(&slots).await.unwrap();
        assert_eq!((a.slot.as_str(), b.slot.as_str()), ("701", "702"));
        assert!(lot.park(&slots).await.is_none(), "the lot is full");
        drop(a);
        let c = lot.park(&slots).await.unwrap();
        assert_eq!(c.slot, "701", "a gone caller's slot is free again");
        lot.unpark("702").await;
        assert_eq!(lot.park(&slots).await.unwrap().slot, "702");
    }
}

//! Stations the box is ringing for a colleague's call (an agent dialled
//! their extension), so that another agent can take the call at their own
//! phone with the pickup code and the rung agent's number (`*81001`).
//! Queue calls ringing an agent are the ACD's to hand over; these are the
//! calls agents place to each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::lines::Lease;

/// The registry; cheap to clone.
#[derive(Debug)]
pub struct Ringing<L> {
    rung: Arc<Mutex<HashMap<String, mpsc::Sender<Lease<L>>>>>,
}

impl<L> Clone for Ringing<L> {
    fn clone(&self) -> Self {
        Ringing {
            rung: Arc::clone(&self.rung),
        }
    }
}

impl<L> Default for Ringing<L> {
    fn default() -> Self {
        Ringing {
            rung: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// A station being rung: a phone that picks the call up arrives here.
/// Dropping it takes the station off the registry.
#[derive(Debug)]
pub struct Rung<L> {
    station: String,
    registry: Ringing<L>,
    /// The lease of the station that picked the call up.
    pub taken: mpsc::Receiver<Lease<L>>,
}

impl<L> Drop for Rung<L> {
    fn drop(&mut self) {
        let mut rung = self.registry.rung.lock().unwrap_or_else(|p| p.into_inner());
        rung.remove(&self.station);
    }
}

impl<L> Ringing<L> {
    /// `station` rings for a colleague's call until the returned guard goes.
    pub fn ring(&self, station: &str) -> Rung<L> {
        let (tx, taken) = mpsc::channel(1);
        self.rung
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(station.to_string(), tx);
        Rung {
            station: station.to_string(),
            registry: self.clone(),
            taken,
        }
    }

    /// Whether `station` is ringing for a colleague's call.
    pub fn is_ringing(&self, station: &str) -> bool {
        let rung = self.rung.lock().unwrap_or_else(|p| p.into_inner());
        rung.contains_key(station)
    }

    /// Hands `lease` (the picking-up phone) to the call ringing `station`;
    /// the lease back when nothing rings there any more.
    pub fn take(&self, station: &str, lease: Lease<L>) -> Result<(), Lease<L>> {
        let tx = {
            let mut rung = self.rung.lock().unwrap_or_else(|p| p.into_inner());
            // One pickup per ringing call.
            rung.remove(station)
        };
        match tx {
            Some(tx) => tx.try_send(lease).map_err(|e| e.into_inner()),
            None => Err(lease),
        }
    }
}

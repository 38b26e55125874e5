//! Borrowing idle lines: a call that needs a second line (a station to
//! ring, a trunk to dial out on) asks the line's watcher for it.
//!
//! Each line's watcher owns its port and answers [`Lines::seize`] requests
//! on a small inbox: an idle line is lent as a [`Lease`], a busy one is
//! refused at once. The lease gives the port back when it is dropped, so a
//! flow that ends early (caller hung up, error, shutdown) can never leak a
//! line; the watcher takes the port back and is ready for the next call.

use std::collections::HashMap;
use std::sync::Arc;

use callbox_hal::{LineEvent, Port};
use tokio::sync::{mpsc, oneshot};

/// A request for a line.
#[derive(Debug)]
pub struct Seize<L, I, O> {
    /// Where the watcher answers: a lease, or `None` when the line is busy.
    pub reply: oneshot::Sender<Option<Lease<L, I, O>>>,
}

/// What goes back to a line's watcher: the port, and an event the
/// borrower read but that belongs to the watcher (a call that arrived on a
/// trunk just as the box seized it to dial out: glare).
pub type Returned<L, I, O> = (Port<L, I, O>, Option<LineEvent>);

/// A borrowed line; the port goes back to its watcher on drop.
#[derive(Debug)]
pub struct Lease<L, I, O> {
    port: Option<Port<L, I, O>>,
    back: Option<oneshot::Sender<Returned<L, I, O>>>,
    pending: Option<LineEvent>,
}

impl<L, I, O> Lease<L, I, O> {
    /// A lease of `port`, returned through `back`.
    pub fn new(port: Port<L, I, O>, back: oneshot::Sender<Returned<L, I, O>>) -> Self {
        Lease {
            port: Some(port),
            back: Some(back),
            pending: None,
        }
    }

    /// Hands an event back to the watcher with the port (an incoming call
    /// the borrower must not swallow).
    pub fn put_back(&mut self, ev: LineEvent) {
        self.pending = Some(ev);
    }

    /// The borrowed port.
    pub fn port(&mut self) -> &mut Port<L, I, O> {
        self.port
            .as_mut()
            .expect("a lease holds its port until dropped")
    }
}

impl<L, I, O> Drop for Lease<L, I, O> {
    fn drop(&mut self) {
        if let (Some(p), Some(b)) = (self.port.take(), self.back.take()) {
            // The watcher is gone only when the daemon is stopping.
            let _ = b.send((p, self.pending.take()));
        }
    }
}

/// Inboxes of every line's watcher, by line id.
#[derive(Debug)]
pub struct Lines<L, I, O> {
    inboxes: HashMap<String, mpsc::Sender<Seize<L, I, O>>>,
}

impl<L, I, O> Lines<L, I, O> {
    /// An empty directory.
    pub fn new() -> Self {
        Lines {
            inboxes: HashMap::new(),
        }
    }

    /// Registers a line; returns the inbox its watcher serves.
    pub fn register(&mut self, id: &str) -> mpsc::Receiver<Seize<L, I, O>> {
        let (tx, rx) = mpsc::channel(8);
        self.inboxes.insert(id.to_string(), tx);
        rx
    }

    /// Whether the box has a line with this id.
    pub fn has(&self, id: &str) -> bool {
        self.inboxes.contains_key(id)
    }

    /// Borrows an idle line; `None` when it is busy, unknown or out of
    /// service.
    pub async fn seize(&self, id: &str) -> Option<Lease<L, I, O>> {
        let inbox = self.inboxes.get(id)?;
        let (tx, rx) = oneshot::channel();
        inbox.send(Seize { reply: tx }).await.ok()?;
        rx.await.ok().flatten()
    }
}

impl<L, I, O> Default for Lines<L, I, O> {
    fn default() -> Self {
        Lines::new()
    }
}

/// Shared directory.
pub type SharedLines<L, I, O> = Arc<Lines<L, I, O>>;

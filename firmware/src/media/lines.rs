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

use callbox_hal::LineEvent;

use super::engine::Leg;

/// A line as the firmware holds it: its signalling (the backend's `Line`)
/// and its audio's leg in the media engine, which owns the audio itself.
#[derive(Debug)]
pub struct Port<L> {
    /// Events and commands.
    pub line: L,
    /// The audio, in the engine.
    pub leg: Leg,
}
use tokio::sync::{mpsc, oneshot};

/// A request for a line.
#[derive(Debug)]
pub struct Seize<L> {
    /// Where the watcher answers: a lease, or `None` when the line is busy.
    pub reply: oneshot::Sender<Option<Lease<L>>>,
}

/// What goes back to a line's watcher: the port, and an event the
/// borrower read but that belongs to the watcher (a call that arrived on a
/// trunk just as the box seized it to dial out: glare).
pub type Returned<L> = (Port<L>, Option<LineEvent>);

/// A borrowed line; the port goes back to its watcher on drop.
#[derive(Debug)]
pub struct Lease<L> {
    port: Option<Port<L>>,
    back: Option<oneshot::Sender<Returned<L>>>,
    pending: Option<LineEvent>,
}

impl<L> Lease<L> {
    /// A lease of `port`, returned through `back`.
    pub fn new(port: Port<L>, back: oneshot::Sender<Returned<L>>) -> Self {
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

    /// Lends the port on to someone who may keep it for a while or drop
    /// it at once (a call a supervisor joins): the receiver has it back
    /// when they drop their lease, for [`Lease::restore`]. Until then this
    /// lease holds no port.
    pub fn lend_on(&mut self) -> (Lease<L>, oneshot::Receiver<Returned<L>>) {
        let (tx, rx) = oneshot::channel();
        let port = self
            .port
            .take()
            .expect("a lease holds its port until lent on");
        (Lease::new(port, tx), rx)
    }

    /// The port lent on with [`Lease::lend_on`] is back.
    pub fn restore(&mut self, port: Port<L>) {
        self.port = Some(port);
    }

    /// The borrowed port.
    pub fn port(&mut self) -> &mut Port<L> {
        self.port
            .as_mut()
            .expect("a lease holds its port until dropped")
    }
}

impl<L> Drop for Lease<L> {
    fn drop(&mut self) {
        if let (Some(p), Some(b)) = (self.port.take(), self.back.take()) {
            // The watcher is gone only when the daemon is stopping.
            let _ = b.send((p, self.pending.take()));
        }
    }
}

/// Inboxes of every line's watcher, by line id.
#[derive(Debug)]
pub struct Lines<L> {
    inboxes: HashMap<String, mpsc::Sender<Seize<L>>>,
}

impl<L> Lines<L> {
    /// An empty directory.
    pub fn new() -> Self {
        Lines {
            inboxes: HashMap::new(),
        }
    }

    /// Registers a line; returns the inbox its watcher serves.
    pub fn register(&mut self, id: &str) -> mpsc::Receiver<Seize<L>> {
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
    pub async fn seize(&self, id: &str) -> Option<Lease<L>> {
        let inbox = self.inboxes.get(id)?;
        let (tx, rx) = oneshot::channel();
        inbox.send(Seize { reply: tx }).await.ok()?;
        rx.await.ok().flatten()
    }
}

impl<L> Default for Lines<L> {
    fn default() -> Self {
        Lines::new()
    }
}

/// Shared directory.
pub type SharedLines<L> = Arc<Lines<L>>;

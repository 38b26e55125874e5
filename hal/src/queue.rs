//! A bounded single-producer, single-consumer queue for line audio (the
//! simulated lines', and the analog backend's between its PCM thread and
//! the call actors), in place of a tokio channel. Either end may be used
//! from a plain thread (`try_send`, `try_recv`) or from async code.
//!
//! Why not `tokio::sync::mpsc`: its storage is a list of 32-slot blocks, and
//! a channel that carries a frame every 20 ms walks through a whole block
//! (some 10 KiB of frames) before reusing a slot. With two lines and two
//! directions per call, that is tens of KiB per call the CPU's caches keep
//! missing and the process keeps resident. Here the frames sit in a ring
//! that starts over at its first slot whenever the reader empties it — the
//! usual case, as the box reads each frame as it comes — so a line touches
//! one or two slots.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    cap: usize,
    reader: Option<Waker>,
    writer: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing here panics while holding the lock; a poisoned lock still
        // holds consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The queue is at capacity.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The writing end.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The reading end.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Sender")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Receiver")
    }
}

/// A queue holding at most `cap` items.
pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            // Grown on demand: a line whose reader keeps up holds one or
            // two frames, and thousands of lines are configured up front.
            items: VecDeque::new(),
            cap,
            reader: None,
            writer: None,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl<T> Sender<T> {
    /// Queues `item` if there is room now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), Full> {
        let mut s = self.shared.lock();
        if s.receiver_gone {
            return Err(Full::Closed);
        }
        if s.items.len() >= s.cap {
            return Err(Full::Full);
        }
        s.items.push_back(item);
        let w = s.reader.take();
        drop(s);
        wake(w);
        Ok(())
    }

    /// Queues `item`, waiting for room. `Err(item)` when the receiver is
    /// gone. Cancel-safe: dropped before it completes, nothing is queued.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            let it = item.take().expect("polled after completion");
            if s.receiver_gone {
                return Poll::Ready(Err(it));
            }
            if s.items.len() >= s.cap {
                item = Some(it);
                park(&mut s.writer, cx);
                return Poll::Pending;
            }
            s.items.push_back(it);
            let w = s.reader.take();
            drop(s);
            wake(w);
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Items waiting to be read.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Waits, looking every `poll`, until the receiver has taken every
    /// item (a playout buffer played out). `Err` if it goes first.
    pub(crate) async fn drained(&self, poll: std::time::Duration) -> Result<(), ()> {
        loop {
            {
                let s = self.shared.lock();
                if s.items.is_empty() {
                    return Ok(());
                }
                if s.receiver_gone {
                    return Err(());
                }
            }
            tokio::time::sleep(poll).await;
        }
    }
}

impl<T> Receiver<T> {
    fn pop(s: &mut State<T>) -> Option<T> {
        let item = s.items.pop_front()?;
        if s.items.is_empty() {
            // Start over at the first slot (clear on an empty ring only
            // resets its head): the next frame lands where this one was.
            s.items.clear();
        }
        Some(item)
    }

    /// The next item; `None` once the queue is empty and the sender gone.
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(item) = Self::pop(&mut s) {
                let w = s.writer.take();
                drop(s);
                wake(w);
                return Poll::Ready(Some(item));
            }
            if s.sender_gone {
                return Poll::Ready(None);
            }
            park(&mut s.reader, cx);
            Poll::Pending
        })
        .await
    }

    /// The next item if one is waiting and `ready` says it may be taken;
    /// `Err` once the queue is empty and the sender gone. One lock, never
    /// waits: the media engine's read.
    pub(crate) fn try_take_if(&mut self, ready: impl FnOnce(&T) -> bool) -> Result<Option<T>, ()> {
        let mut s = self.shared.lock();
        if s.items.front().is_some_and(|i| !ready(i)) {
            return Ok(None);
        }
        match Self::pop(&mut s) {
            Some(item) => {
                let w = s.writer.take();
                drop(s);
                wake(w);
                Ok(Some(item))
            }
            None if s.sender_gone => Err(()),
            None => Ok(None),
        }
    }

    /// The next item if one is waiting; `Err` once the queue is empty and
    /// the sender gone.
    pub(crate) fn try_take(&mut self) -> Result<Option<T>, ()> {
        self.try_take_if(|_| true)
    }

    /// What `f` makes of the next item, waiting for one; `None` once the
    /// queue is empty and the sender gone. The item stays queued.
    pub(crate) async fn peek<R>(&mut self, f: impl Fn(&T) -> R) -> Option<R> {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(item) = s.items.front() {
                return Poll::Ready(Some(f(item)));
            }
            if s.sender_gone {
                return Poll::Ready(None);
            }
            park(&mut s.reader, cx);
            Poll::Pending
        })
        .await
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut s = self.shared.lock();
        let item = Self::pop(&mut s)?;
        let w = s.writer.take();
        drop(s);
        wake(w);
        Some(item)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.sender_gone = true;
        let w = s.reader.take();
        drop(s);
        wake(w);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receiver_gone = true;
        // Frames nobody will read go now, not with the sender.
        s.items.clear();
        let w = s.writer.take();
        drop(s);
        wake(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_order_and_full() {
        let (tx, mut rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(Full::Full));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn an_emptied_ring_starts_over_at_its_first_slot() {
        let (tx, mut rx) = bounded::<u32>(8);
        tx.try_send(0).unwrap();
        // as_slices() starts at the ring's head.
        let first = tx.shared.lock().items.as_slices().0.as_ptr();
        assert_eq!(rx.try_recv(), Some(0));
        for i in 1..100 {
            tx.try_send(i).unwrap();
            assert_eq!(tx.shared.lock().items.as_slices().0.as_ptr(), first);
            assert_eq!(rx.try_recv(), Some(i));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn send_waits_for_room_and_recv_for_items() {
        let (tx, mut rx) = bounded(1);
        tx.send(1).await.unwrap();
        let writer = tokio::spawn(async move {
            tx.send(2).await.unwrap();
            tx
        });
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        let tx = writer.await.unwrap();
        assert_eq!(rx.recv().await, Some(2));
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(3).unwrap();
        assert_eq!(reader.await.unwrap(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn either_end_going_is_seen_by_the_other() {
        let (tx, mut rx) = bounded(4);
        tx.try_send(7).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(7), "queued items are still read");
        assert_eq!(rx.recv().await, None);

        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        let blocked = tokio::spawn(async move { tx.send(2).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(blocked.await.unwrap(), Err(2));
    }
}

//! The dialler's bookkeeping: a predictive campaign's pacing over its
//! day, and the pending contacts ordered by when they are due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::Contact;

/// A predictive campaign's pacing, over the campaign's day (in its
/// window's zone): how many calls it dialled, how many were answered and
/// how many of those found no agent.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    day: String,
    dialled: u64,
    answered: u64,
    abandoned: u64,
}

/// How long before an agent's call is expected to end a predictive
/// campaign dials for them: about the time a contact takes to answer.
pub(super) const ANSWER_LEAD: Duration = Duration::from_secs(6);

/// Attempts before the answer rate is trusted: the first calls go one
/// per free agent.
const PACER_WARM_UP: u64 = 10;

impl Pacer {
    pub(super) fn ended(&mut self, day: &str, answered: bool, abandoned: bool) {
        if self.day != day {
            *self = Pacer {
                day: day.to_string(),
                ..Pacer::default()
            };
        }
        self.dialled += 1;
        self.answered += u64::from(answered);
        self.abandoned += u64::from(abandoned);
    }

    /// Whether `ahead` calls in flight beyond the free agents could all
    /// end abandoned and leave the day's share within `cap`.
    pub(super) fn affords(&self, ahead: u64, cap: f64) -> bool {
        (self.abandoned + ahead) as f64 <= cap * self.answered as f64
    }

    /// Calls to dial per free agent: the inverse of the answer rate, at
    /// most `max`. One (progressive) during the warm-up, and whenever the
    /// day's abandons are within two of what `cap` allows for the calls
    /// answered so far: the calls dialled ahead can each end abandoned,
    /// and the day's share must stay under the cap. A campaign therefore
    /// dials ahead only once it has answered enough calls to afford an
    /// abandon (at 3 %, about seventy).
    pub(super) fn ratio(&self, cap: f64, max: f64) -> f64 {
        if self.dialled < PACER_WARM_UP {
            return 1.0;
        }
        let allowed = cap * self.answered as f64;
        if (self.abandoned + 2) as f64 > allowed {
            return 1.0;
        }
        (self.dialled as f64 / self.answered.max(1) as f64).clamp(1.0, max)
    }
}

/// Pending contacts by when they are due, first due on top (list order
/// among equals). A contact rescheduled is pushed again; its old entry is
/// skipped when it surfaces, so each decision costs O(log n) however long
/// the list.
pub(super) struct Due {
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl Due {
    pub(super) fn new(contacts: &[Contact]) -> Due {
        let heap = contacts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.row.state == "pending")
            .map(|(i, c)| Reverse((c.row.next_at_ms, i)))
            .collect();
        Due { heap }
    }

    /// Drops entries that no longer say when their contact is due.
    pub(super) fn clean(&mut self, contacts: &[Contact]) {
        while let Some(Reverse((at, i))) = self.heap.peek() {
            let c = &contacts[*i].row;
            if c.state == "pending" && c.next_at_ms == *at {
                return;
            }
            self.heap.pop();
        }
    }

    /// The contact due first, taken off, if it is due at `now`.
    pub(super) fn pop_due(&mut self, contacts: &[Contact], now: i64) -> Option<usize> {
        self.clean(contacts);
        match self.heap.peek() {
            Some(Reverse((at, i))) if *at <= now => {
                let i = *i;
                self.heap.pop();
                Some(i)
            }
            _ => None,
        }
    }

    /// When the first pending contact is due.
    pub(super) fn next_at(&mut self, contacts: &[Contact]) -> Option<i64> {
        self.clean(contacts);
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Contact `i` after a decision: due again if pending; one fewer
    /// `open` when it has reached a final state.
    pub(super) fn requeue(&mut self, contacts: &[Contact], i: usize, open: &mut usize) {
        let c = &contacts[i];
        if c.row.state == "pending" {
            self.heap.push(Reverse((c.row.next_at_ms, i)));
        } else if c.is_final() {
            *open = open.saturating_sub(1);
        }
    }
}

//! The collector's log in summaries: what it stored is counted per box and
//! stream and printed every few seconds as one line, so a fleet of
//! thousands of boxes does not write a line per batch; problems (gaps,
//! bad input) are still printed at once by the collector.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Boxes a summary line names; the others are counted together.
const NAMED: usize = 8;

/// What one message stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// `site/box`.
    pub source: String,
    /// The stream's name, or `recordings` for a finished recording.
    pub what: String,
    /// New records (or recordings).
    pub new: u64,
    /// Ones that were already stored (sent again).
    pub again: u64,
}

/// A box's counts by stream: (new, again).
type Streams = BTreeMap<String, (u64, u64)>;

/// The counts since the last summary.
#[derive(Debug, Default)]
pub struct Tally {
    /// By source, then by stream.
    counts: BTreeMap<String, Streams>,
}

impl Tally {
    /// Counts `s`.
    pub fn add(&mut self, s: &Stored) {
        let c = self
            .counts
            .entry(s.source.clone())
            .or_default()
            .entry(s.what.clone())
            .or_default();
        c.0 += s.new;
        c.1 += s.again;
    }

    /// The summary of what was counted over `secs` seconds, `None` when
    /// nothing was; counting starts again.
    pub fn take_line(&mut self, secs: u64) -> Option<String> {
        if self.counts.is_empty() {
            return None;
        }
        let counts = std::mem::take(&mut self.counts);
        let total = |f: &dyn Fn(&str) -> bool| -> u64 {
            counts
                .values()
                .flat_map(|m| m.iter())
                .filter(|(k, _)| f(k))
                .map(|(_, (n, _))| n)
                .sum()
        };
        let records = total(&|k| k != "recordings");
        let recordings = total(&|k| k == "recordings");
        let again: u64 = counts
            .values()
            .flat_map(|m| m.values())
            .map(|(_, a)| a)
            .sum();
        let mut line = format!(
            "stored in {secs}s: {}, {} from {}",
            plural(records, "record"),
            plural(recordings, "recording"),
            plural(counts.len() as u64, "box")
        );
        if again > 0 {
            let _ = write!(line, " ({again} already stored)");
        }
        // The busiest boxes by name, with their streams.
        let mut boxes: Vec<(&String, &Streams)> = counts.iter().collect();
        boxes.sort_by_key(|(name, m)| {
            (
                std::cmp::Reverse(m.values().map(|c| c.0 + c.1).sum::<u64>()),
                *name,
            )
        });
        line.push_str(" —");
        for (i, (name, m)) in boxes.iter().take(NAMED).enumerate() {
            let streams: Vec<String> = m
                .iter()
                .map(|(k, (n, a))| {
                    if *a > 0 {
                        format!("{k} {n}+{a} again")
                    } else {
                        format!("{k} {n}")
                    }
                })
                .collect();
            let sep = if i == 0 { " " } else { "; " };
            let _ = write!(line, "{sep}{name}: {}", streams.join(", "));
        }
        if boxes.len() > NAMED {
            let _ = write!(line, "; and {} more boxes", boxes.len() - NAMED);
        }
        Some(line)
    }
}

/// `1 record`, `2 records`, `3 boxes`.
fn plural(n: u64, one: &str) -> String {
    match (n, one.ends_with('x')) {
        (1, _) => format!("{n} {one}"),
        (_, true) => format!("{n} {one}es"),
        (_, false) => format!("{n} {one}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(source: &str, what: &str, new: u64, again: u64) -> Stored {
        Stored {
            source: source.into(),
            what: what.into(),
            new,
            again,
        }
    }

    #[test]
    fn a_summary_counts_per_box_and_stream_busiest_first_then_starts_again() {
        let mut t = Tally::default();
        assert_eq!(t.take_line(5), None);
        t.add(&s("s1/b1", "cdr", 3, 0));
        t.add(&s("s1/b2", "cdr", 10, 0));
        t.add(&s("s1/b2", "events", 2, 1));
        t.add(&s("s1/b1", "recordings", 1, 0));
        t.add(&s("s1/b1", "cdr", 1, 0));
        assert_eq!(
            t.take_line(5).unwrap(),
            "stored in 5s: 16 records, 1 recording from 2 boxes (1 already stored) — \
             s1/b2: cdr 10, events 2+1 again; s1/b1: cdr 4, recordings 1"
        );
        assert_eq!(t.take_line(5), None);
    }

    #[test]
    fn a_large_fleet_names_only_the_busiest_boxes() {
        let mut t = Tally::default();
        for i in 0..25 {
            t.add(&s(&format!("s/b{i:02}"), "cdr", 100 - i, 0));
        }
        let line = t.take_line(5).unwrap();
        assert!(
            line.starts_with(
                "stored in 5s: 2200 records, 0 recordings from 25 boxes — s/b00: cdr 100; s/b01"
            ),
            "{line}"
        );
        assert!(line.ends_with("s/b07: cdr 93; and 17 more boxes"), "{line}");
    }
}

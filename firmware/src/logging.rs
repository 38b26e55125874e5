//! Logging set-up: readable on a terminal, plain under systemd, and the
//! last lines kept in memory for headquarters.
//!
//! Under journald (`JOURNAL_STREAM` is set) lines carry no colours and no
//! timestamps (the journal adds its own). `RUST_LOG` overrides the level the
//! config gives: a level and `target=level` directives
//! (`warn,callbox_firmware::acd=debug`), matched by target prefix
//! (tracing-subscriber's `Targets`: span and field filters would pull a
//! regular-expression engine into the firmware). Besides the terminal or
//! journal, every line that passes the level filter also goes to a bounded
//! in-memory ring ([`LogRing`]), which
//! the fleet link's `logs` command reads: a box in a branch office has no
//! one to read its journal.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

/// Lines the daemon's ring keeps (the `logs` command's maximum).
pub const RING_LINES: usize = 2000;
/// Longest line kept; a longer one is cut (2000 lines stay under 1 MiB).
const MAX_LINE: usize = 512;

static RING: OnceLock<LogRing> = OnceLock::new();
static LEVEL: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// The daemon's ring of recent log lines (empty until [`init`] installs it,
/// or a test layers it itself).
pub fn ring() -> &'static LogRing {
    RING.get_or_init(|| LogRing::new(RING_LINES))
}

fn filter(level: &str) -> Targets {
    // rsipstack logs every datagram at info: a busy trunk would drown the
    // box's own lines (and wear the card).
    format!("{level},rusqlite=warn,rsipstack=warn")
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

/// Installs the global subscriber. Calling it twice is harmless.
pub fn init(level: &str) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok());
    let pinned = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| filter(level)));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let fmt = if journald {
        fmt.without_time().boxed()
    } else {
        fmt.with_timer(tracing_subscriber::fmt::time::uptime())
            .boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(ring().clone())
        .try_init()
        .is_ok();
    // RUST_LOG is the operator's word: a config change does not override it.
    if installed && !pinned {
        let _ = LEVEL.set(handle);
    }
}

/// Changes the level (a config change); nothing when `RUST_LOG` set it or
/// [`init`] did not run.
pub fn set_level(level: &str) {
    if let Some(h) = LEVEL.get()
        && let Err(e) = h.reload(filter(level))
    {
        tracing::warn!("log level not changed: {e}");
    }
}

/// The most recent log lines, bounded: the oldest go when it is full.
/// Cheap to clone; clones share the lines. As a tracing [`Layer`] it keeps
/// every event it sees as one line: time (UTC), level, spans with their
/// fields, message and fields.
#[derive(Debug, Clone)]
pub struct LogRing {
    lines: Arc<Mutex<VecDeque<String>>>,
    cap: usize,
}

impl LogRing {
    /// A ring that keeps at most `cap` lines.
    pub fn new(cap: usize) -> LogRing {
        LogRing {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(cap.min(256)))),
            cap,
        }
    }

    /// Adds a line, dropping the oldest when full.
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        while l.len() >= self.cap.max(1) {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<String> {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().skip(l.len().saturating_sub(n)).cloned().collect()
    }
}

/// A span's fields, formatted once when it opens.
struct SpanFields(String);

/// Writes `message` first, then `key=value` pairs.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for LogRing
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut v = Line::default();
        attrs.record(&mut v);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(SpanFields(v.fields.trim_start().to_string()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let _ = write!(line, " {:>5} ", event.metadata().level());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                line.push_str(span.name());
                if let Some(f) = span.extensions().get::<SpanFields>()
                    && !f.0.is_empty()
                {
                    let _ = write!(line, "{{{}}}", f.0);
                }
                line.push_str(": ");
            }
        }
        let mut v = Line::default();
        event.record(&mut v);
        line.push_str(&v.message);
        line.push_str(&v.fields);
        self.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_only_the_newest_lines() {
        let ring = LogRing::new(3);
        for i in 0..5 {
            ring.push(format!("line {i}"));
        }
        assert_eq!(ring.last(10), ["line 2", "line 3", "line 4"]);
        assert_eq!(ring.last(1), ["line 4"]);
        assert!(ring.last(0).is_empty());
        ring.push("x".repeat(5000));
        assert!(ring.last(1)[0].len() <= MAX_LINE + '…'.len_utf8());
    }

    #[test]
    fn events_become_lines_with_their_spans_and_fields() {
        let ring = LogRing::new(10);
        let sub = tracing_subscriber::registry().with(ring.clone());
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("call", id = "ab12", line = "trunk-1");
            let _e = span.enter();
            tracing::warn!(caller = "13800138000", "call arrives");
        });
        let l = ring.last(1);
        assert!(
            l[0].ends_with(" WARN call{id=ab12 line=trunk-1}: call arrives caller=13800138000"),
            "{l:?}"
        );
    }
}

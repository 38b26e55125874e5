//! Telemetry: the box's health as headquarters sees it on `{b}/telemetry`
//! and in the answer to the `status` command (docs/mqtt.md, "Telemetry").
//!
//! [`Telemetry`] is the daemon's [`TelemetrySource`]. Each snapshot reads
//! the operating system (`/proc`, `statvfs` of the data directory, the
//! thermal zones), the call database (calls in progress, active alarms,
//! through a read-only connection that does not disturb the store) and the
//! ACD's live statistics. The link adds the envelope (`v`, `site`, `box`,
//! `at`, `session`) and `backlog`.
//!
//! Everything read here may be missing (a board without a thermal zone, a
//! container without `/proc/self`, a database not created yet): the field is
//! then `null` (or an empty list), never an error. Files and SQLite are read
//! on tokio's blocking pool, off the executor.
//!
//! CPU percentages are deltas between snapshots of the kernel's counters, so
//! they describe the last telemetry period. The first snapshot has no
//! earlier one and samples twice, [`FIRST_SAMPLE`] apart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbox_hal::{LineInfo, LineKind};
use serde_json::{Value, json};

use super::{BoxFuture, TelemetrySource};
use crate::acd::{AcdHandle, AcdStats};
use crate::clock::{Clock, rfc3339_ms};
use crate::daynight::DayNight;
use crate::store::ReadOnly;

/// Live ACD statistics, `None` when the ACD is not running.
pub type AcdStatsFn = Arc<dyn Fn() -> BoxFuture<'static, Option<AcdStats>> + Send + Sync>;

/// A line's state by line id, `None` for a line the source does not know.
pub type LineStateFn = Arc<dyn Fn(&str) -> Option<LineState> + Send + Sync>;

/// Calls in progress now.
pub type CountFn = Arc<dyn Fn() -> usize + Send + Sync>;

/// How long a snapshot waits for the ACD's statistics.
const ACD_TIMEOUT: Duration = Duration::from_secs(2);

/// Gap between the two CPU samples of the first snapshot.
pub const FIRST_SAMPLE: Duration = Duration::from_millis(250);

/// Fewer clock ticks than this between two snapshots (a `status` command
/// right after a telemetry message) give no meaningful percentage: the
/// previous figures are repeated instead.
const MIN_TICKS: u64 = 10;

/// What a line-state source knows of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    /// Up, down or unknown, as the line's backend reports it.
    pub health: callbox_hal::Health,
    /// Why (`registered at …`, `no phone registered`).
    pub reason: String,
    /// A call holds the line, when the source knows (else inferred from
    /// the calls and the ACD).
    pub busy: Option<bool>,
}

/// The daemon's telemetry source.
pub struct Telemetry {
    data_dir: PathBuf,
    lines: Vec<LineInfo>,
    acd: Option<AcdStatsFn>,
    clock: Clock,
    line_state: Option<LineStateFn>,
    calls_in_progress: Option<CountFn>,
    daynight: Option<DayNight>,
    campaigns: Option<crate::calls::campaign::Live>,
    paths: Arc<SysPaths>,
    started: Instant,
    cpu: Arc<Mutex<CpuState>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("data_dir", &self.data_dir)
            .field("lines", &self.lines.len())
            .field("acd", &self.acd.is_some())
            .field("line_state", &self.line_state.is_some())
            .field("calls_in_progress", &self.calls_in_progress.is_some())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Telemetry of a box keeping its data in `data_dir`, with the site's
    /// `lines`. `acd` gives live queue and agent statistics (see
    /// [`acd_source`]); without it `queues` and `agents` are empty. The
    /// daemon's uptime counts from here.
    ///
    /// Without [`with_line_state`](Self::with_line_state) a line's `up` is
    /// `null` and `busy` is inferred: a trunk with a call in progress on it,
    /// a station whose agent is ringing or on a call. Without
    /// [`with_calls_in_progress`](Self::with_calls_in_progress) calls in
    /// progress are counted in the database.
    pub fn new(
        data_dir: PathBuf,
        lines: Vec<LineInfo>,
        acd: Option<AcdStatsFn>,
        clock: Clock,
    ) -> Telemetry {
        Telemetry {
            data_dir,
            lines,
            acd,
            clock,
            line_state: None,
            calls_in_progress: None,
            daynight: None,
            campaigns: None,
            paths: Arc::new(SysPaths::default()),
            started: Instant::now(),
            cpu: Arc::default(),
        }
    }

    /// Takes lines' `up` and `busy` from `f` (lines it does not know keep
    /// the inferred values).
    pub fn with_line_state(mut self, f: LineStateFn) -> Telemetry {
        self.line_state = Some(f);
        self
    }

    /// Takes `calls_in_progress` from `f` instead of the database.
    pub fn with_calls_in_progress(mut self, f: CountFn) -> Telemetry {
        self.calls_in_progress = Some(f);
        self
    }

    /// Reports the day/night switch (`daynight`; `null` without).
    pub fn with_daynight(mut self, d: DayNight) -> Telemetry {
        self.daynight = Some(d);
        self
    }

    /// Reports the outbound campaigns' live figures (`campaigns`).
    pub fn with_campaigns(mut self, live: crate::calls::campaign::Live) -> Telemetry {
        self.campaigns = Some(live);
        self
    }

    #[cfg(test)]
    fn with_paths(mut self, paths: SysPaths) -> Telemetry {
        self.paths = Arc::new(paths);
        self
    }
}

/// An [`AcdStatsFn`] that asks the ACD actor behind `handle`.
pub fn acd_source<L>(handle: AcdHandle<L>) -> AcdStatsFn
where
    L: Send + 'static,
{
    Arc::new(move || {
        let h = handle.clone();
        Box::pin(async move { h.stats().await })
    })
}

impl TelemetrySource for Telemetry {
    fn snapshot(&self) -> BoxFuture<'_, Value> {
        Box::pin(async move {
            let acd = match &self.acd {
                Some(f) => tokio::time::timeout(ACD_TIMEOUT, f()).await.ok().flatten(),
                None => None,
            };
            let (paths, cpu, data_dir) =
                (self.paths.clone(), self.cpu.clone(), self.data_dir.clone());
            let sys = tokio::task::spawn_blocking(move || read_system(&paths, &cpu, &data_dir))
                .await
                .unwrap_or_default();
            self.compose(sys, acd)
        })
    }
}

impl Telemetry {
    fn compose(&self, sys: System, acd: Option<AcdStats>) -> Value {
        let busy_stations: Vec<&str> = acd
            .iter()
            .flat_map(|a| &a.agents)
            .filter(|a| matches!(a.state.as_str(), "ringing" | "on_call"))
            .filter_map(|a| a.station.as_deref())
            .collect();
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                let inferred = match l.kind {
                    LineKind::Trunk => sys.db.busy_trunks.contains(&l.id),
                    LineKind::Station => busy_stations.contains(&l.id.as_str()),
                };
                let known = self.line_state.as_ref().and_then(|f| f(&l.id));
                let health = known
                    .as_ref()
                    .map_or(callbox_hal::Health::Unknown, |s| s.health);
                json!({
                    "id": l.id,
                    "kind": l.kind.to_string(),
                    "up": match health {
                        callbox_hal::Health::Up => Some(true),
                        callbox_hal::Health::Down => Some(false),
                        callbox_hal::Health::Unknown => None,
                    },
                    "state": health.as_str(),
                    "reason": known.as_ref().map(|s| s.reason.as_str()),
                    "busy": known.and_then(|s| s.busy).unwrap_or(inferred),
                })
            })
            .collect();
        let calls = match &self.calls_in_progress {
            Some(f) => Some(f() as u64),
            None => sys.db.calls_in_progress,
        };
        let (queues, agents): (Vec<Value>, Vec<Value>) = match &acd {
            None => (Vec::new(), Vec::new()),
            Some(a) => (
                a.queues
                    .iter()
                    .map(|q| {
                        json!({
                            "name": q.queue,
                            "waiting": q.waiting,
                            "longest_wait_s": q.longest_wait_ms / 1000,
                            "service_level": q.service_level,
                            "abandon_rate": q.abandon_rate,
                        })
                    })
                    .collect(),
                a.agents
                    .iter()
                    .map(|g| json!({"id": g.agent, "state": g.state, "station": g.station}))
                    .collect(),
            ),
        };
        let alarms: Vec<Value> = sys
            .db
            .alarms
            .iter()
            .map(|a| {
                json!({
                    "code": a.code,
                    "severity": a.severity,
                    "since": rfc3339_ms(a.since_ms),
                    "message": a.message,
                })
            })
            .collect();
        json!({
            "boot_id": self.clock.boot_id(),
            "firmware": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "cpu": {
                "box_pct": sys.cpu.box_pct,
                "daemon_pct": sys.cpu.daemon_pct,
                "load1": sys.load1,
            },
            "memory": {
                "total_kb": sys.mem.total_kb,
                "available_kb": sys.mem.available_kb,
                "daemon_rss_kb": sys.rss_kb,
            },
            "disk": {
                "data_free_bytes": sys.disk.map(|d| d.0),
                "data_total_bytes": sys.disk.map(|d| d.1),
            },
            "temperature_c": sys.temperature_c,
            "clock_synced": self.clock.now().synced,
            "lines": lines,
            "calls_in_progress": calls,
            "queues": queues,
            "agents": agents,
            "alarms": alarms,
            "daynight": self.daynight.as_ref().map(|d| {
                let s = d.state();
                json!({"mode": s.mode, "night": s.night})
            }),
            "campaigns": self.campaigns.as_ref().map(|c| {
                c.snapshot()
                    .into_iter()
                    .map(|(name, s)| s.json(&name, c.control(&name)))
                    .collect::<Vec<_>>()
            }).unwrap_or_default(),
        })
    }
}

/// Where the kernel's figures are read (tests point these at fixtures).
#[derive(Debug, Clone)]
struct SysPaths {
    stat: PathBuf,
    self_stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    self_status: PathBuf,
    thermal: PathBuf,
}

impl Default for SysPaths {
    fn default() -> Self {
        SysPaths {
            stat: "/proc/stat".into(),
            self_stat: "/proc/self/stat".into(),
            loadavg: "/proc/loadavg".into(),
            meminfo: "/proc/meminfo".into(),
            self_status: "/proc/self/status".into(),
            thermal: "/sys/class/thermal".into(),
        }
    }
}

/// Everything read off the executor for one snapshot.
#[derive(Debug, Default)]
struct System {
    cpu: CpuPct,
    load1: Option<f64>,
    mem: MemInfo,
    rss_kb: Option<u64>,
    /// (free, total) bytes of the data directory's file system.
    disk: Option<(u64, u64)>,
    temperature_c: Option<f64>,
    db: DbState,
}

fn read_system(paths: &SysPaths, cpu: &Mutex<CpuState>, data_dir: &Path) -> System {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    System {
        cpu: cpu_usage(paths, cpu),
        load1: read(&paths.loadavg).and_then(|s| parse_loadavg(&s)),
        mem: read(&paths.meminfo)
            .map(|s| parse_meminfo(&s))
            .unwrap_or_default(),
        rss_kb: read(&paths.self_status).and_then(|s| parse_vm_rss(&s)),
        disk: disk_space(data_dir),
        temperature_c: read_temperature(&paths.thermal),
        db: read_db(data_dir),
    }
}

// ---- CPU ----

/// The kernel's cumulative CPU counters, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuSample {
    /// All CPUs' time, every state.
    total: u64,
    /// All CPUs' idle and I/O-wait time.
    idle: u64,
    /// This process's user and system time, if readable.
    process: Option<u64>,
}

/// Percentages over an interval; `None` where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct CpuPct {
    /// Busy share of the whole box (all cores), 0-100.
    box_pct: Option<f64>,
    /// The daemon's share of the whole box (all cores), 0-100.
    daemon_pct: Option<f64>,
}

#[derive(Debug, Default)]
struct CpuState {
    prev: Option<CpuSample>,
    last: CpuPct,
}

/// The aggregate `cpu` line of `/proc/stat` → (total, idle) ticks. Guest
/// time is already counted in user and nice, so it is left out of the total.
fn parse_proc_stat(s: &str) -> Option<(u64, u64)> {
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|f| f.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

/// `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`, in clock
/// ticks. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_self_stat(s: &str) -> Option<u64> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn cpu_sample(paths: &SysPaths) -> Option<CpuSample> {
    let (total, idle) = parse_proc_stat(&std::fs::read_to_string(&paths.stat).ok()?)?;
    let process = std::fs::read_to_string(&paths.self_stat)
        .ok()
        .and_then(|s| parse_self_stat(&s));
    Some(CpuSample {
        total,
        idle,
        process,
    })
}

/// Usage between two samples; `None` if no time passed (or the counters
/// went backwards, which they do not).
fn cpu_between(a: &CpuSample, b: &CpuSample) -> Option<CpuPct> {
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
    let idle = b.idle.saturating_sub(a.idle).min(total);
    let pct = |n: u64| round1(100.0 * n as f64 / total as f64);
    Some(CpuPct {
        box_pct: Some(pct(total - idle)),
        daemon_pct: match (a.process, b.process) {
            (Some(x), Some(y)) => Some(pct(y.saturating_sub(x).min(total))),
            _ => None,
        },
    })
}

/// Usage since the previous snapshot (blocking: the first call sleeps
/// [`FIRST_SAMPLE`]).
fn cpu_usage(paths: &SysPaths, state: &Mutex<CpuState>) -> CpuPct {
    let Some(now) = cpu_sample(paths) else {
        return CpuPct::default();
    };
    let prev = state.lock().unwrap_or_else(|e| e.into_inner()).prev;
    let (from, to) = match prev {
        Some(p) => (p, now),
        None => {
            std::thread::sleep(FIRST_SAMPLE);
            (now, cpu_sample(paths).unwrap_or(now))
        }
    };
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if prev.is_some() && to.total.saturating_sub(from.total) < MIN_TICKS {
        return st.last;
    }
    st.prev = Some(to);
    st.last = cpu_between(&from, &to).unwrap_or_default();
    st.last
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---- memory, load, disk, temperature ----

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MemInfo {
    total_kb: Option<u64>,
    available_kb: Option<u64>,
}

/// The value of a `Key:   123 kB` line.
fn kb_field(s: &str, key: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_meminfo(s: &str) -> MemInfo {
    MemInfo {
        total_kb: kb_field(s, "MemTotal"),
        available_kb: kb_field(s, "MemAvailable"),
    }
}

/// `VmRSS` of `/proc/self/status`, kB.
fn parse_vm_rss(s: &str) -> Option<u64> {
    kb_field(s, "VmRSS")
}

/// The 1-minute load average, first field of `/proc/loadavg`.
fn parse_loadavg(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// (free to the daemon, total) bytes of the file system holding `dir`.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = st.fragment_size() as u64;
    Some((
        st.blocks_available() as u64 * frag,
        st.blocks() as u64 * frag,
    ))
}

/// The SoC's temperature in °C from `<dir>/thermal_zone*/temp`
/// (millidegrees): the first zone whose `type` names the CPU or SoC
/// (`cpu-thermal` on a Raspberry Pi, `soc_thermal` elsewhere), else zone 0.
fn read_temperature(dir: &Path) -> Option<f64> {
    let mut zones: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("thermal_zone")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    zones.sort();
    let is_soc = |p: &Path| {
        std::fs::read_to_string(p.join("type")).is_ok_and(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("cpu") || t.contains("soc")
        })
    };
    let soc = zones.iter().filter(|(_, p)| is_soc(p));
    let zone0 = zones.iter().filter(|(n, _)| *n == 0);
    soc.chain(zone0).find_map(|(_, p)| {
        let milli: f64 = std::fs::read_to_string(p.join("temp"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(round1(milli / 1000.0))
    })
}

// ---- database ----

#[derive(Debug, Default)]
struct DbState {
    /// `None` when the database cannot be read.
    calls_in_progress: Option<u64>,
    /// Trunks with a call in progress.
    busy_trunks: Vec<String>,
    /// Active alarms, one per code, oldest first.
    alarms: Vec<ActiveAlarm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ActiveAlarm {
    code: String,
    severity: String,
    /// When the oldest uncleared raise of this code happened.
    since_ms: i64,
    /// The latest raise's message.
    message: String,
}

fn read_db(data_dir: &Path) -> DbState {
    let db = match ReadOnly::open(data_dir) {
        Ok(db) => db,
        Err(e) => {
            tracing::debug!("telemetry: {e}");
            return DbState::default();
        }
    };
    let mut out = DbState::default();
    match db.calls_in_progress() {
        Ok(rows) => {
            out.calls_in_progress = Some(rows.iter().map(|(_, n)| *n as u64).sum());
            out.busy_trunks = rows.into_iter().filter_map(|(t, _)| t).collect();
        }
        Err(e) => tracing::debug!("telemetry: {e}"),
    }
    match db.raised_alarms() {
        Ok(rows) => {
            // A code raised again before it was cleared is one alarm: since
            // its first raise, as its latest raise describes it.
            for a in rows {
                match out.alarms.iter_mut().find(|x| x.code == a.code) {
                    Some(x) => {
                        x.severity = a.severity;
                        x.message = a.message;
                    }
                    None => out.alarms.push(ActiveAlarm {
                        code: a.code,
                        severity: a.severity,
                        since_ms: a.at_ms,
                        message: a.message,
                    }),
                }
            }
        }
        Err(e) => tracing::debug!("telemetry: {e}"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::{AgentStats, QueueStats};
    use crate::clock::Stamp;
    use crate::store::{CallStart, Direction, Store, StoreMsg};

    const STAT: &str = "cpu  1000 50 300 8000 200 10 20 5 40 0
cpu0 500 25 150 4000 100 5 10 2 20 0
intr 12345
ctxt 999
";
    const STAT_LATER: &str = "cpu  1400 50 400 8400 200 10 20 5 40 0
";
    // A command name with a space and a parenthesis in it.
    const SELF_STAT: &str = "4242 (callboxd (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                             70 30 0 0 20 0 9 0 12345 100000000 2450 18446744073709551615";
    const SELF_STAT_LATER: &str = "4242 (callboxd (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                                   110 40 0 0 20 0 9 0 12345 100000000 2450 18446744073709551615";
    const MEMINFO: &str = "MemTotal:        3884000 kB
MemFree:          500000 kB
MemAvailable:    3100000 kB
Buffers:           10000 kB
";
    const STATUS: &str = "Name:\tcallboxd
VmPeak:\t   20000 kB
VmRSS:\t    9800 kB
Threads:\t4
";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn fixtures(dir: &Path) -> SysPaths {
        SysPaths {
            stat: write(dir, "stat", STAT),
            self_stat: write(dir, "self_stat", SELF_STAT),
            loadavg: write(dir, "loadavg", "0.40 0.30 0.20 1/123 4567\n"),
            meminfo: write(dir, "meminfo", MEMINFO),
            self_status: write(dir, "status", STATUS),
            thermal: dir.join("thermal"),
        }
    }

    #[test]
    fn proc_stat_totals_leave_guest_time_out() {
        // user..steal = 1000+50+300+8000+200+10+20+5; guest is in user.
        assert_eq!(parse_proc_stat(STAT), Some((9585, 8200)));
        assert_eq!(parse_proc_stat("cpu  1 2 3 4\n"), Some((10, 4)));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn self_stat_counts_fields_after_the_last_parenthesis() {
        assert_eq!(parse_self_stat(SELF_STAT), Some(100));
        assert_eq!(parse_self_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_self_stat("garbage"), None);
    }

    #[test]
    fn cpu_percentages_are_shares_of_the_whole_box_between_samples() {
        let (t0, i0) = parse_proc_stat(STAT).unwrap();
        let (t1, i1) = parse_proc_stat(STAT_LATER).unwrap();
        let a = CpuSample {
            total: t0,
            idle: i0,
            process: parse_self_stat(SELF_STAT),
        };
        let b = CpuSample {
            total: t1,
            idle: i1,
            process: parse_self_stat(SELF_STAT_LATER),
        };
        // 900 ticks passed, 400 of them idle; the daemon used 50.
        let p = cpu_between(&a, &b).unwrap();
        assert_eq!(p.box_pct, Some(55.6));
        assert_eq!(p.daemon_pct, Some(5.6));
        assert_eq!(cpu_between(&a, &a), None);
        let c = CpuSample { process: None, ..b };
        assert_eq!(cpu_between(&a, &c).unwrap().daemon_pct, None);
    }

    #[test]
    fn meminfo_status_and_loadavg_parse() {
        assert_eq!(
            parse_meminfo(MEMINFO),
            MemInfo {
                total_kb: Some(3_884_000),
                available_kb: Some(3_100_000)
            }
        );
        // An old kernel without MemAvailable.
        assert_eq!(parse_meminfo("MemTotal: 1000 kB\n").available_kb, None);
        assert_eq!(parse_vm_rss(STATUS), Some(9800));
        // A kernel thread has no VmRSS line.
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
        assert_eq!(parse_loadavg("0.40 0.30 0.20 1/123 4567\n"), Some(0.4));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn temperature_prefers_the_cpu_zone_then_zone0_else_none() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("thermal");
        assert_eq!(read_temperature(&t), None, "no thermal directory");
        std::fs::create_dir_all(&t).unwrap();
        assert_eq!(read_temperature(&t), None, "no zones");
        write(&t, "thermal_zone0/type", "acpitz\n");
        write(&t, "thermal_zone0/temp", "40000\n");
        write(&t, "cooling_device0/type", "fan\n");
        assert_eq!(read_temperature(&t), Some(40.0));
        write(&t, "thermal_zone1/type", "cpu-thermal\n");
        write(&t, "thermal_zone1/temp", "48312\n");
        assert_eq!(read_temperature(&t), Some(48.3));
        // A CPU zone that cannot be read falls back to zone 0.
        write(&t, "thermal_zone1/temp", "");
        assert_eq!(read_temperature(&t), Some(40.0));
        write(&t, "thermal_zone10/type", "SOC_THERMAL\n");
        write(&t, "thermal_zone10/temp", "51000\n");
        assert_eq!(read_temperature(&t), Some(51.0));
    }

    fn stamp(ms: i64) -> Stamp {
        Stamp {
            wall_ms: ms,
            mono_ms: ms,
            synced: true,
        }
    }

    fn lines() -> Vec<LineInfo> {
        let l = |id: &str, kind| LineInfo {
            id: id.into(),
            kind,
        };
        vec![
            l("trunk-1", LineKind::Trunk),
            l("trunk-2", LineKind::Trunk),
            l("desk-1", LineKind::Station),
            l("desk-2", LineKind::Station),
        ]
    }

    fn acd_stats() -> AcdStats {
        AcdStats {
            queues: vec![QueueStats {
                queue: "sales".into(),
                waiting: 2,
                longest_wait_ms: 31_900,
                joined: 10,
                answered: 8,
                abandoned: 1,
                abandon_rate: 0.11,
                timeouts: 0,
                turned_away: 0,
                service_level: 0.9,
                avg_speed_of_answer_ms: 5000,
                avg_handle_ms: 60_000,
            }],
            agents: vec![
                AgentStats {
                    agent: "alice".into(),
                    state: "on_call".into(),
                    reason: None,
                    in_state_ms: 1000,
                    station: Some("desk-1".into()),
                    calls: 3,
                    talk_ms: 100_000,
                    pauses: 0,
                    call: None,
                },
                AgentStats {
                    agent: "bob".into(),
                    state: "logged_out".into(),
                    reason: None,
                    in_state_ms: 0,
                    station: None,
                    calls: 0,
                    talk_ms: 0,
                    pauses: 0,
                    call: None,
                },
            ],
            calls: Vec::new(),
            supervisors: Vec::new(),
            scheduler_us: 0,
        }
    }

    /// A data directory with one call in progress on trunk-1, one finished
    /// call, `disk_full` raised twice and not cleared, `fan` raised and
    /// cleared.
    async fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (id, line) in [("c1", "trunk-1"), ("c2", "trunk-2")] {
            h.send(StoreMsg::CallStarted(CallStart {
                id: id.into(),
                direction: Direction::Inbound,
                trunk_line: Some(line.into()),
                station: None,
                caller_name: None,
                caller: Some("1001".into()),
                dialled: None,
                at: stamp(1000),
            }))
            .await;
        }
        h.send(StoreMsg::CallEnded(crate::store::CallEnd {
            id: "c2".into(),
            at: stamp(2000),
            disposition: crate::store::Disposition::Answered,
            cause: callbox_hal::HangupCause::Normal,
            side: crate::store::Side::Caller,
        }))
        .await;
        for (ms, code, msg) in [
            (1_790_000_000_000, "disk_full", "first"),
            (1_790_000_001_000, "fan", "fan stopped"),
            (1_790_000_002_000, "disk_full", "latest"),
        ] {
            h.send(StoreMsg::Alarm {
                at: stamp(ms),
                code: code.into(),
                severity: "critical",
                message: msg.into(),
            })
            .await;
        }
        h.send(StoreMsg::AlarmCleared {
            at: stamp(1_790_000_003_000),
            code: "fan".into(),
        })
        .await;
        drop(h);
        store.close().await;
        dir
    }

    #[tokio::test]
    async fn snapshot_reports_calls_alarms_lines_acd_and_system_figures() {
        let data = data_dir().await;
        let sys = tempfile::tempdir().unwrap();
        let paths = fixtures(sys.path());
        write(&paths.thermal, "thermal_zone0/type", "cpu-thermal\n");
        write(&paths.thermal, "thermal_zone0/temp", "48312\n");
        let acd: AcdStatsFn = Arc::new(|| Box::pin(async { Some(acd_stats()) }));
        let t = Telemetry::new(
            data.path().to_path_buf(),
            lines(),
            Some(acd),
            Clock::new(false),
        )
        .with_paths(paths.clone());

        let s = t.snapshot().await;
        assert_eq!(s["firmware"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s["boot_id"], t.clock.boot_id());
        assert!(s["uptime_s"].is_u64());
        assert!(s["clock_synced"].is_boolean());
        assert_eq!(s["calls_in_progress"], 1);
        assert_eq!(
            s["lines"],
            json!([
                {"id": "trunk-1", "kind": "trunk", "up": null, "state": "unknown", "reason": null, "busy": true},
                {"id": "trunk-2", "kind": "trunk", "up": null, "state": "unknown", "reason": null, "busy": false},
                {"id": "desk-1", "kind": "station", "up": null, "state": "unknown", "reason": null, "busy": true},
                {"id": "desk-2", "kind": "station", "up": null, "state": "unknown", "reason": null, "busy": false},
            ])
        );
        assert_eq!(
            s["queues"],
            json!([{"name": "sales", "waiting": 2, "longest_wait_s": 31,
                    "service_level": 0.9, "abandon_rate": 0.11}])
        );
        assert_eq!(
            s["agents"],
            json!([
                {"id": "alice", "state": "on_call", "station": "desk-1"},
                {"id": "bob", "state": "logged_out", "station": null},
            ])
        );
        assert_eq!(
            s["alarms"],
            json!([{"code": "disk_full", "severity": "critical",
                    "since": "2026-09-21T14:13:20.000Z", "message": "latest"}])
        );
        assert_eq!(
            s["memory"],
            json!({"total_kb": 3_884_000, "available_kb": 3_100_000, "daemon_rss_kb": 9800})
        );
        assert_eq!(s["temperature_c"], 48.3);
        assert_eq!(s["cpu"]["load1"], 0.4);
        assert!(s["disk"]["data_total_bytes"].as_u64().unwrap() > 0);
        assert!(
            s["disk"]["data_free_bytes"].as_u64().unwrap()
                <= s["disk"]["data_total_bytes"].as_u64().unwrap()
        );
        // The fixtures did not move during the first snapshot's two samples.
        assert_eq!(s["cpu"]["box_pct"], Value::Null);

        write(sys.path(), "stat", STAT_LATER);
        write(sys.path(), "self_stat", SELF_STAT_LATER);
        let s = t.snapshot().await;
        assert_eq!(s["cpu"]["box_pct"], 55.6);
        assert_eq!(s["cpu"]["daemon_pct"], 5.6);
        // Too soon for new figures: the last ones are repeated.
        let s = t.snapshot().await;
        assert_eq!(s["cpu"]["box_pct"], 55.6);
    }

    #[tokio::test]
    async fn snapshot_of_an_empty_box_has_nulls_and_empty_lists_not_errors() {
        let empty = tempfile::tempdir().unwrap();
        let paths = SysPaths {
            stat: empty.path().join("none"),
            self_stat: empty.path().join("none"),
            loadavg: empty.path().join("none"),
            meminfo: empty.path().join("none"),
            self_status: empty.path().join("none"),
            thermal: empty.path().join("none"),
        };
        let gone = empty.path().join("no-data-dir");
        let t = Telemetry::new(gone, lines(), None, Clock::new(false)).with_paths(paths);
        let s = t.snapshot().await;
        for p in [
            "/cpu/box_pct",
            "/cpu/daemon_pct",
            "/cpu/load1",
            "/memory/total_kb",
            "/memory/daemon_rss_kb",
            "/disk/data_free_bytes",
            "/temperature_c",
            "/calls_in_progress",
        ] {
            assert_eq!(s.pointer(p), Some(&Value::Null), "{p}");
        }
        assert_eq!(s["queues"], json!([]));
        assert_eq!(s["agents"], json!([]));
        assert_eq!(s["alarms"], json!([]));
        assert_eq!(s["lines"][0]["busy"], false);
    }

    #[tokio::test]
    async fn line_and_call_sources_override_what_is_inferred() {
        let data = data_dir().await;
        let state: LineStateFn = Arc::new(|id| {
            (id == "trunk-2").then_some(LineState {
                health: callbox_hal::Health::Down,
                reason: "registration at sip.example refused: 403 Forbidden".into(),
                busy: Some(false),
            })
        });
        let t = Telemetry::new(data.path().to_path_buf(), lines(), None, Clock::new(false))
            .with_line_state(state)
            .with_calls_in_progress(Arc::new(|| 7));
        let s = t.snapshot().await;
        assert_eq!(s["calls_in_progress"], 7);
        assert_eq!(
            s["lines"][0],
            json!({"id": "trunk-1", "kind": "trunk", "up": null, "state": "unknown", "reason": null, "busy": true})
        );
        assert_eq!(
            s["lines"][1],
            json!({"id": "trunk-2", "kind": "trunk", "up": false, "state": "down",
                   "reason": "registration at sip.example refused: 403 Forbidden", "busy": false})
        );
    }

    #[tokio::test]
    async fn snapshot_of_this_machine_reads_the_real_kernel_figures() {
        let dir = tempfile::tempdir().unwrap();
        let t = Telemetry::new(
            dir.path().to_path_buf(),
            Vec::new(),
            None,
            Clock::new(false),
        );
        let s = t.snapshot().await;
        assert!(s["memory"]["total_kb"].as_u64().unwrap() > 0);
        assert!(s["memory"]["daemon_rss_kb"].as_u64().unwrap() > 0);
        let pct = s["cpu"]["box_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{pct}");
        assert!(s["cpu"]["daemon_pct"].as_f64().unwrap() <= 100.0);
        assert!(s["disk"]["data_total_bytes"].as_u64().unwrap() > 0);
    }
}

//! What the operating system says about time.
//!
//! A Raspberry Pi has no battery-backed clock: until NTP synchronises it,
//! wall time after a reboot can be days off. Records therefore carry whether
//! the clock was synchronised, plus the boot id and a monotonic offset so
//! headquarters can correct them later.

use std::time::Duration;

/// Whether the kernel considers the system clock synchronised (NTP or
/// similar has disciplined it). `false` when it cannot be read.
pub fn is_synchronized() -> bool {
    // SAFETY: `timex` is plain old data; zeroed is a valid value, and with
    // `modes == 0` adjtimex only reads the kernel's state into it.
    unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut tx);
        state >= 0 && state != libc::TIME_ERROR
    }
}

/// The kernel's id for this boot (`/proc/sys/kernel/random/boot_id`), or a
/// per-process fallback when it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("unknown-{}", std::process::id()))
}

/// Time since boot, including time suspended (`CLOCK_BOOTTIME`).
pub fn since_boot() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Month, day, hour and minute of local time, `MMDDHHMM`, as caller id
/// carries them; `01010000` if the time cannot be read.
pub fn local_mmddhhmm() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = libc::time_t::try_from(now).unwrap_or(0);
    // SAFETY: `tm` is plain old data; zeroed is a valid value (its zone
    // pointer null). localtime_r is the thread-safe variant and writes
    // only into `tm`; both pointers are valid for the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&secs, &mut tm).is_null()).then_some(tm)
    };
    match tm {
        Some(tm) => format!(
            "{:02}{:02}{:02}{:02}",
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min
        ),
        None => "01010000".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_id_and_uptime_are_readable() {
        assert!(!super::boot_id().is_empty());
        assert!(super::since_boot() > std::time::Duration::ZERO);
        // Either answer is fine; the call must not fail or panic.
        let _ = super::is_synchronized();
        let t = super::local_mmddhhmm();
        assert_eq!(t.len(), 8, "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_digit()), "{t}");
    }
}

//! Real-time scheduling for the threads that move audio: a period missed
//! is a click every caller hears. The sound card's period thread runs
//! above the firmware's media engine, which runs above everything else.

/// `SCHED_FIFO` priority of a sound card's period thread.
pub const PCM_PRIORITY: i32 = 60;
/// `SCHED_FIFO` priority of the firmware's media engine: below the sound
/// card it is fed by.
pub const MEDIA_PRIORITY: i32 = 50;

/// Asks for real-time scheduling (`SCHED_FIFO` at `priority`) for the
/// calling thread. Without the privilege (not root, no
/// `CAP_SYS_NICE` or rtprio limit) the thread runs at normal priority.
pub fn realtime_priority(priority: i32) -> Result<(), std::io::Error> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the duration of the call;
    // pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

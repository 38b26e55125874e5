//! Thread priorities: the call path first.
//!
//! The runtime's workers move every frame of every call; the recorder's
//! writer, the store and the fleet link have queues and can wait a few
//! milliseconds. On a box whose cores are busy, the kernel's fair scheduler
//! would otherwise hand a waking background thread a whole time slice ahead
//! of a worker with frames due, and those frames would be late. Lowering
//! the background threads' priority (raising their nice value, which needs
//! no privilege) keeps them out of the way while leaving them all the idle
//! CPU.

/// Nice value of the background threads: about a tenth of a worker's CPU
/// share when both want the same core.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`].
pub fn background() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority reads only its integer arguments; on Linux a
    // thread id with PRIO_PROCESS names that one thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) };
    if rc != 0 {
        tracing::debug!(
            "could not lower this thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

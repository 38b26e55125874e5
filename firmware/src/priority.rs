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

/// How much the background threads' nice value is raised above the
/// daemon's: about a tenth of a worker's CPU share when both want the same
/// core.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority [`BACKGROUND_NICE`] steps below
/// the thread that spawned it (relative, so a daemon started with `Nice=`
/// keeps its background below itself; capped at 19).
pub fn background() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // getpriority may return -1 as a valid value: errno tells.
    // SAFETY: errno is thread-local; writing it has no other effect.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: getpriority reads only its integer arguments; on Linux a
    // thread id with PRIO_PROCESS names that one thread.
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if now == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
        tracing::debug!(
            "could not read this thread's priority: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let nice = (now + BACKGROUND_NICE).min(19);
    // SAFETY: as above.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        tracing::debug!(
            "could not lower this thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

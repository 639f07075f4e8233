//! Process hardening done once at start, before the key is loaded: no core dumps and no
//! same-uid `ptrace`/`gcore` (the daemon holds App keys and cached tokens in memory), and enough
//! file descriptors for the connections it promises to serve.

use std::fmt;

/// Descriptors kept free for everything that is not a served or waiting client connection:
/// stdio, the listener, tokio's epoll and wakers, the audit log, the socket lock, connections to
/// GitHub, a `private_key_command`'s pipes, and the connections being answered 503 or refused
/// (64 each at most, see `crate::server`).
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0: no core file, `/proc/PID/mem` and
/// `ptrace` for root only, not for other processes of the daemon's uid) and sets `RLIMIT_CORE`
/// to 0 (no core file even if something makes the process dumpable again). Errors are returned
/// so the caller can refuse to start: a daemon that cannot protect its memory says so.
pub fn forbid_core_dumps() -> Result<(), HardeningError> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| HardeningError {
        what: "prctl(PR_SET_DUMPABLE, 0)",
        error: e.into(),
    })?;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| HardeningError {
        what: "setrlimit(RLIMIT_CORE, 0)",
        error: e.into(),
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force (the
/// old one if raising failed, which is logged).
pub fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let Some(hard) = limit.maximum else {
        // Unlimited hard limit: the kernel still caps at fs.nr_open; ask for that much.
        return current;
    };
    if current >= hard {
        return current;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    ) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!(
                "cannot raise the open-files limit from {current} to {hard}: {e}; connections are capped to fit {current}"
            );
            current
        }
    }
}

/// The connections the daemon may hold at once so that they, the same number waiting for a
/// slot, and [`RESERVED_DESCRIPTORS`] fit in `descriptor_limit`: `configured` or less, at least 1.
pub fn connection_cap(configured: usize, descriptor_limit: u64) -> usize {
    connection_cap_per_budget(configured, descriptor_limit, 1)
}

/// [`connection_cap`] for each of `budgets` connection budgets of the same size (the Unix
/// socket's, and the network listener's when `[network]` is configured), so that all of them,
/// full and with as many waiting, fit in `descriptor_limit` together.
pub fn connection_cap_per_budget(configured: usize, descriptor_limit: u64, budgets: u64) -> usize {
    let usable = descriptor_limit.saturating_sub(RESERVED_DESCRIPTORS) / (2 * budgets.max(1));
    let usable = usize::try_from(usable).unwrap_or(usize::MAX).max(1);
    configured.min(usable)
}

/// A hardening step that failed.
#[derive(Debug)]
pub struct HardeningError {
    /// The call that failed.
    pub what: &'static str,
    /// Why.
    pub error: std::io::Error,
}

impl fmt::Display for HardeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.what, self.error)
    }
}

impl std::error::Error for HardeningError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_waiting_connections_and_the_reserve() {
        assert_eq!(connection_cap(4096, 1024), (1024 - 256) / 2);
        assert_eq!(connection_cap(64, 1024), 64);
        assert_eq!(connection_cap(4096, 1_048_576), 4096);
        assert_eq!(connection_cap(4096, 10), 1, "never zero");
        assert_eq!(connection_cap_per_budget(4096, 1024, 2), (1024 - 256) / 4);
        assert_eq!(connection_cap_per_budget(64, 1024, 2), 64);
    }
}

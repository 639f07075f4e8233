//! What the demo's two child processes (the emulator and the daemon) share: a stop that drains
//! before it kills, and the tail of a log for failure messages.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;

/// SIGTERM, then wait up to `timeout` for `child` to exit; SIGKILL if it does not. Returns its
/// exit status when it exited by itself.
pub async fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.kill().await;
            None
        }
    }
}

/// After a child failed to start: waits briefly for its exit status (" (exit status: 1)") and
/// kills it if it is still running.
pub async fn wait_briefly(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(status)) => format!(" ({status})"),
        _ => {
            let _ = child.start_kill();
            String::new()
        }
    }
}

/// The last lines of `whose` log (`the daemon's`), indented, for failure messages.
pub fn log_tail(whose: &str, log: &Path) -> String {
    const LINES: usize = 20;
    match std::fs::read_to_string(log) {
        Ok(text) if !text.trim().is_empty() => {
            let lines: Vec<&str> = text.lines().collect();
            // A panic's message comes before its backtrace: show it rather than the backtrace's end.
            let start = lines
                .iter()
                .position(|line| line.contains("panicked at"))
                .unwrap_or_else(|| lines.len().saturating_sub(LINES));
            let lines = &lines[..lines.len().min(start + LINES)];
            let mut out = format!("last lines of {whose} log ({}):", log.display());
            for line in &lines[start..] {
                out.push_str("\n  | ");
                out.push_str(line);
            }
            out
        }
        _ => format!("{whose} log ({}) is empty", log.display()),
    }
}

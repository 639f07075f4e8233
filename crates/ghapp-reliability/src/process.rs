//! Process facts for the soak and the connection-flood tests: resident memory read from
//! `/proc`, and the open-files limit raised to its hard maximum (children inherit it).

use anyhow::Context;

/// Resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Open file descriptors of process `pid` (entries in `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count())
}

/// Open file descriptors of process `pid` by kind: `tcp` (connections to GitHub, which an HTTP
/// client pools), `unix` (the socket and its clients), `other` (files, pipes, eventfds…).
pub fn fd_kinds(pid: u32) -> anyhow::Result<std::collections::BTreeMap<&'static str, usize>> {
    let inodes = |table: &str| -> std::collections::HashSet<String> {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // tcp: inode is field 9; unix: the 7th.
                let index = if table == "unix" { 6 } else { 9 };
                fields.get(index).map(|s| s.to_string())
            })
            .collect()
    };
    let tcp: std::collections::HashSet<String> =
        inodes("tcp").into_iter().chain(inodes("tcp6")).collect();
    let unix = inodes("unix");
    let mut kinds = std::collections::BTreeMap::from([("tcp", 0), ("unix", 0), ("other", 0)]);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .flatten()
    {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'));
        let kind = match inode {
            Some(inode) if tcp.contains(inode) => "tcp",
            Some(inode) if unix.contains(inode) => "unix",
            _ => "other",
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    Ok(kinds)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the new soft limit.
/// Processes started afterwards (the daemon) inherit it.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        limit.current = Some(hard);
        setrlimit(Resource::Nofile, limit).context("raising RLIMIT_NOFILE")?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_rss_and_fds() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let kinds = fd_kinds(std::process::id()).unwrap();
        assert!(kinds["tcp"] >= 2, "{kinds:?}");
        assert!(raise_open_files_limit().unwrap() >= 1024);
    }
}

//! Hostile input against the real daemon (docs/reliability.md, "Hostile input"):
//!
//! - a corpus of malformed requests — unknown routes and methods, bad percent-encoding, oversized
//!   request lines, queries, headers, header counts and bodies, smuggling-shaped framing,
//!   HTTP/1.0, no Host, HTTP/2 preface, pipelined garbage, binary noise, stalled heads and bodies
//!   — each answered with a clear 4xx or cut off, and the daemon healthy after every one;
//! - 10,000 idle connections plus slow-header clients, kept up for the whole measurement (closed
//!   ones are reopened), do not starve well-behaved clients: their p99 with and without the
//!   attackers is measured, printed and written to
//!   `$CARGO_TARGET_TMPDIR/ghapp-reliability/hostile.jsonl`.

use ghapp_reliability::figures::{self, quantile, round};
use ghapp_reliability::process::{open_fds, raise_open_files_limit};
use ghapp_reliability::stack::{Stack, Timing};
use ghapp_testkit::daemon::DaemonStart;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status.
    Status(u16),
    /// One of these statuses.
    AnyOf(&'static [u16]),
    /// A 4xx, or the connection closed without an answer.
    ClientErrorOrCut,
    /// Well-formed after all (HTTP/1.0, no Host): any answer but a 5xx.
    Answered,
}

/// What came back.
#[derive(Debug)]
struct Outcome {
    statuses: Vec<u16>,
    elapsed: Duration,
}

/// Sends `bytes` (all at once), then reads until the daemon closes or `wait` passes, and pulls
/// every status line out of what came back.
fn exchange(socket: &Path, bytes: &[u8], wait: Duration) -> Outcome {
    let started = Instant::now();
    let mut statuses = Vec::new();
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Outcome {
            statuses,
            elapsed: started.elapsed(),
        };
    };
    let _ = stream.set_read_timeout(Some(wait));
    // A server that answers early (413, 431) may close before everything is written: fine.
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    // Status lines, wherever they start (pipelined answers follow a body without a newline).
    let text = String::from_utf8_lossy(&raw);
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("HTTP/1.") {
        let line = &rest[at..];
        if let Some(code) = line.get(9..12).and_then(|c| c.parse().ok())
            && line.get(8..9) == Some(" ")
        {
            statuses.push(code);
        }
        rest = &rest[at + 7..];
    }
    Outcome {
        statuses,
        elapsed: started.elapsed(),
    }
}

fn corpus(token_path: &str) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let with_headers = |headers: &str| {
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes()
    };
    let many_headers = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    let delete = |headers: &str, body: &[u8]| {
        let mut bytes =
            format!("DELETE /v1/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n")
                .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let big_chunked = {
        let mut body = Vec::new();
        for _ in 0..40 {
            body.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
            body.extend_from_slice(&[b'a'; 4096]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    };
    let mut noise = vec![0u8; 4096];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i.wrapping_mul(7919) % 251) as u8;
    }
    let mut pipelined = Vec::new();
    for _ in 0..100 {
        pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    use Expect::*;
    vec![
        ("unknown route", get("/nope"), Status(404)),
        (
            "unknown method",
            b"BREW /v1/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            Status(405),
        ),
        (
            "lowercase method",
            b"get /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        (
            "bad percent-encoding",
            get(&format!("{token_path}&x=%zz")),
            Status(400),
        ),
        (
            "percent-encoded invalid UTF-8",
            get("/v1/token?owner=%ff%fe"),
            Status(400),
        ),
        (
            "parameter given twice",
            get("/v1/token?owner=acme&owner=acme"),
            Status(400),
        ),
        (
            "unknown parameter",
            get("/v1/token?owner=acme&evil=1"),
            Status(400),
        ),
        (
            "300-byte value",
            get(&format!("/v1/token?owner={}", "a".repeat(300))),
            Status(400),
        ),
        (
            "oversized query",
            get(&format!("/v1/token?owner=acme&repo={}", "r".repeat(5000))),
            Status(414),
        ),
        (
            "8 KiB path",
            get(&format!("/{}", "a".repeat(8 * 1024))),
            AnyOf(&[404, 414, 431]),
        ),
        (
            "100 KiB request line",
            get(&format!("/{}", "a".repeat(100 * 1024))),
            ClientErrorOrCut,
        ),
        (
            "NUL in the target",
            b"GET /v1/tok\0en HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        (
            "20 KiB header",
            with_headers(&format!("X-Big: {}\r\n", "b".repeat(20 * 1024))),
            ClientErrorOrCut,
        ),
        (
            "150 headers",
            with_headers(&many_headers(150)),
            ClientErrorOrCut,
        ),
        (
            "10,000 headers",
            with_headers(&many_headers(10_000)),
            ClientErrorOrCut,
        ),
        (
            "header without a colon",
            with_headers("NoColonHere\r\n"),
            Status(400),
        ),
        (
            "bad Content-Length",
            delete("Content-Length: abc\r\n", b""),
            Status(400),
        ),
        (
            "Content-Length and chunked",
            delete(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
            ClientErrorOrCut,
        ),
        (
            "10 MB declared body",
            delete("Content-Length: 10000000\r\n", b"{}"),
            Status(413),
        ),
        (
            "160 KiB chunked body",
            delete("Transfer-Encoding: chunked\r\n", &big_chunked),
            Status(413),
        ),
        (
            "expect 100-continue, 10 MB",
            delete("Content-Length: 10000000\r\nExpect: 100-continue\r\n", b""),
            Status(413),
        ),
        (
            "body not JSON",
            delete("Content-Length: 8\r\n", b"not json"),
            Status(400),
        ),
        (
            "token not a string",
            delete("Content-Length: 12\r\n", b"{\"token\":42}"),
            Status(400),
        ),
        (
            "HTTP/1.0, no Host",
            b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(),
            Answered,
        ),
        (
            "HTTP/1.1, no Host",
            b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            Answered,
        ),
        (
            "absolute-form target",
            b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            Answered,
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        (
            "HTTP/3.0",
            b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        (
            "empty lines only",
            b"\r\n\r\n\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        ("binary noise", noise, ClientErrorOrCut),
        (
            "valid then garbage",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE \x01\x02\r\n\r\n".to_vec(),
            ClientErrorOrCut,
        ),
        ("101 pipelined requests", pipelined, Answered),
    ]
}

fn check(name: &str, expect: Expect, outcome: &Outcome) -> Result<(), String> {
    let first = outcome.statuses.first().copied();
    let ok = match expect {
        Expect::Status(code) => first == Some(code),
        Expect::AnyOf(codes) => first.is_some_and(|c| codes.contains(&c)),
        Expect::ClientErrorOrCut => outcome
            .statuses
            .iter()
            .all(|c| (400..500).contains(c) || *c == 200 && name == "valid then garbage"),
        Expect::Answered => first.is_some() && outcome.statuses.iter().all(|c| *c < 500),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name}: expected {expect:?}, got {:?}",
            outcome.statuses
        ))
    }
}

fn healthy(socket: &Path) -> bool {
    exchange(
        socket,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .statuses
        == [200]
}

#[test]
fn malformed_requests_get_a_clear_4xx_or_are_cut_off_and_the_daemon_stays_healthy() {
    let stack = Stack::start(
        Timing::fast(),
        "client_timeout = \"2s\"\n",
        DaemonStart::default(),
    )
    .expect("the stack starts");
    let socket = stack.daemon.socket().to_path_buf();
    let token_path = stack.token_path("acme", "widgets");
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for (name, bytes, expect) in corpus(&token_path) {
        let outcome = exchange(&socket, &bytes, Duration::from_secs(10));
        if let Err(e) = check(name, expect, &outcome) {
            failures.push(e);
        }
        if !healthy(&socket) {
            failures.push(format!("{name}: the daemon was not healthy afterwards"));
        }
        rows.push(serde_json::json!({
            "request": name,
            "bytes": bytes.len(),
            "statuses": if outcome.statuses.len() > 3 {
                serde_json::json!(format!("{} answers, all {:?}", outcome.statuses.len(), outcome.statuses.iter().collect::<std::collections::BTreeSet<_>>()))
            } else {
                serde_json::json!(outcome.statuses)
            },
            "ms": outcome.elapsed.as_millis() as u64,
        }));
    }

    // Stalls: a head that never ends and a body that never comes are cut at client_timeout.
    for (name, bytes, expect_408) in [
        (
            "head never finished",
            b"GET /v1/token?owner=acme HTTP/1.1\r\nHost: x\r\n".to_vec(),
            false,
        ),
        (
            "body never sent",
            b"DELETE /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"tok".to_vec(),
            true,
        ),
    ] {
        let outcome = exchange(&socket, &bytes, Duration::from_secs(20));
        let cut_in_time = outcome.elapsed < Duration::from_secs(8);
        let answer_ok = if expect_408 {
            outcome.statuses == [408]
        } else {
            outcome.statuses.iter().all(|c| (400..500).contains(c))
        };
        if !cut_in_time || !answer_ok {
            failures.push(format!(
                "{name}: {:?} after {:?}",
                outcome.statuses, outcome.elapsed
            ));
        }
        rows.push(serde_json::json!({"request": name, "statuses": outcome.statuses, "ms": outcome.elapsed.as_millis() as u64}));
    }

    // Still serving real tokens, and nothing panicked.
    let (status, body) = stack.daemon.get(&token_path).expect("token request");
    assert_eq!(status, 200, "{body}");
    let log = stack.daemon.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    let dir =
        figures::figures_dir(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ghapp-reliability"));
    figures::write(&dir, "malformed.jsonl", &rows).expect("figures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Idle attackers: `count` connections that never send a byte, reopened when the daemon
/// closes them, until stopped.
struct Attackers {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    reopened: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Attackers {
    fn start(socket: &Path, idle: usize, slow: usize) -> Attackers {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let reopened = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        let per_thread = idle.div_ceil(4);
        for t in 0..4 {
            let n = per_thread.min(idle.saturating_sub(t * per_thread));
            let (socket, stop, open, reopened) = (
                socket.to_path_buf(),
                stop.clone(),
                open.clone(),
                reopened.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut conns: Vec<Option<UnixStream>> =
                    (0..n).map(|_| connect(&socket, &open)).collect();
                while !stop.load(Ordering::Relaxed) {
                    for slot in conns.iter_mut() {
                        let closed = match slot {
                            Some(stream) => peer_closed(stream),
                            None => true,
                        };
                        if closed {
                            if slot.take().is_some() {
                                open.fetch_sub(1, Ordering::Relaxed);
                            }
                            *slot = connect(&socket, &open);
                            reopened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                let held = conns.iter().filter(|c| c.is_some()).count();
                open.fetch_sub(held, Ordering::Relaxed);
            }));
        }
        for _ in 0..slow {
            let (socket, stop) = (socket.to_path_buf(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = UnixStream::connect(&socket) else {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let _ = stream.write_all(b"GET /v1/token?owner=acme HTTP/1.1\r\nX-Slow: ");
                    // One byte every 300 ms: never a complete head.
                    while !stop.load(Ordering::Relaxed) && stream.write_all(b"a").is_ok() {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
            }));
        }
        Attackers {
            stop,
            open,
            reopened,
            threads,
        }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.reopened.load(Ordering::Relaxed)
    }
}

fn connect(socket: &Path, open: &AtomicUsize) -> Option<UnixStream> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_nonblocking(true).ok()?;
    open.fetch_add(1, Ordering::Relaxed);
    Some(stream)
}

/// Whether the daemon closed (or answered and closed) this connection.
fn peer_closed(stream: &mut UnixStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        // EOF, or an answer (a 503) the daemon sends just before closing.
        Ok(0 | 1..) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// `requests` well-behaved token requests, one connection each: (latencies in ms, failures).
fn well_behaved(socket: &Path, path: &str, requests: usize) -> (Vec<f64>, Vec<String>) {
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for _ in 0..requests {
        let started = Instant::now();
        let result = ghapp_testkit::daemon::raw_request(socket, request.as_bytes());
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        match result {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!(
                "{} {}",
                r.status,
                r.body.chars().take(120).collect::<String>()
            )),
            Err(e) => failures.push(format!("{e:#}")),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (latencies, failures)
}

/// Well-behaved requests measured under the flood.
const ATTACKED_REQUESTS: usize = 60;

#[test]
fn ten_thousand_idle_connections_and_slow_headers_do_not_starve_well_behaved_clients() {
    let limit = raise_open_files_limit().expect("RLIMIT_NOFILE");
    // The test holds the attackers' ends, the daemon the other ends (plus its own files).
    let idle = 10_000usize.min((limit as usize).saturating_sub(512));
    assert!(
        idle >= 1000,
        "RLIMIT_NOFILE hard limit {limit} is too low for the test"
    );
    let stack = Stack::start(Timing::fast(), "", DaemonStart::default()).expect("the stack starts");
    let socket = stack.daemon.socket().to_path_buf();
    let path = stack.token_path("acme", "widgets");
    let pid = stack.daemon.pid().expect("daemon pid");

    let (base, base_failures) = well_behaved(&socket, &path, 300);
    assert!(
        base_failures.is_empty(),
        "without attackers: {base_failures:?}"
    );

    let attackers = Attackers::start(&socket, idle, 100);
    // Let the attackers connect (and the daemon take its fill of them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while attackers.open.load(Ordering::Relaxed) < idle * 9 / 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon_fds_attacked = open_fds(pid).unwrap_or(0);
    let (attacked, attacked_failures) = well_behaved(&socket, &path, ATTACKED_REQUESTS);
    let open_during = attackers.open.load(Ordering::Relaxed);
    let reopened = attackers.stop();
    // After the attack the daemon is healthy and lets go of the connections.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        healthy(&socket),
        "the daemon is not healthy after the attack"
    );
    let daemon_fds_after = open_fds(pid).unwrap_or(0);

    let p = |v: &[f64], q: f64| round(quantile(v, q).unwrap_or_default(), 2);
    let row = serde_json::json!({
        "case": "connection flood",
        "rlimit_nofile": limit,
        "idle_attackers": idle,
        "slow_header_attackers": 100,
        "attacker_connections_open_during": open_during,
        "attacker_reconnects": reopened,
        "daemon_fds_attacked": daemon_fds_attacked,
        "daemon_fds_after": daemon_fds_after,
        "requests_without": 300,
        "requests_with": ATTACKED_REQUESTS,
        "p50_ms_without": p(&base, 0.5),
        "p99_ms_without": p(&base, 0.99),
        "p50_ms_with": p(&attacked, 0.5),
        "p99_ms_with": p(&attacked, 0.99),
        "failed_with": attacked_failures.len(),
        "failure_example": attacked_failures.first(),
    });
    let dir =
        figures::figures_dir(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ghapp-reliability"));
    figures::write(&dir, "hostile.jsonl", &[row]).expect("figures");
    // Every well-behaved request is served. Runs on 2026-12-06 reset 0–3 of 60 (more when the
    // daemon was short of CPU): a connection that found every waiting place taken by idle
    // attackers was dropped with its request unread. Waiting places are now kept for clients
    // that send something (docs/reliability.md, "Hostile input").
    assert!(
        attacked_failures.is_empty(),
        "{} of {ATTACKED_REQUESTS} well-behaved requests failed under the flood: {:?}",
        attacked_failures.len(),
        &attacked_failures[..attacked_failures.len().min(5)]
    );
    // A generous bound: the attackers reopen every closed connection as fast as they can, and
    // share two cores with the daemon; the figure itself goes to docs/reliability.md.
    let p99 = p(&attacked, 0.99);
    assert!(p99 < 10_000.0, "well-behaved p99 {p99} ms under the flood");
}

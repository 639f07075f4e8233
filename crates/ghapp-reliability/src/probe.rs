//! A well-behaved caller: asks the daemon for the same token at a steady pace on its own thread
//! and records every answer — when, how long it took, the status, and the token with its
//! `expires_at`, or the error message.

use crate::github::unix_now;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use ghapp_testkit::daemon::http_request;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One answer.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The request's path and query.
    pub path: String,
    /// When the request was sent, on the local wall clock (Unix seconds).
    pub sent_at: f64,
    /// When the answer was complete (Unix seconds).
    pub answered_at: f64,
    /// Time to answer.
    pub latency: Duration,
    /// HTTP status; 0 when there was no HTTP answer.
    pub status: u16,
    /// The token served (200 only).
    pub token: Option<Token>,
    /// Its `expires_at` as served (local wall clock); `None` if absent or unreadable.
    pub expires_at: Option<Timestamp>,
    /// The error message (`{"error"}`) or the transport failure.
    pub error: Option<String>,
}

impl Sample {
    /// A 200 with a token.
    pub fn served(&self) -> bool {
        self.status == 200 && self.token.is_some()
    }
}

/// What a probe asks.
#[derive(Debug, Clone)]
pub struct Ask {
    /// HTTP method.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// JSON body.
    pub body: Option<String>,
}

impl Ask {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Ask {
        Ask {
            method: "GET",
            path: path.into(),
            body: None,
        }
    }
}

/// Asks the same request on `socket` every `interval` until stopped.
pub struct Probe {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Probe {
    /// Starts probing with `GET path`.
    pub fn start(socket: PathBuf, path: String, interval: Duration) -> Probe {
        Probe::start_asking(socket, Ask::get(path), interval)
    }

    /// Starts probing with any request.
    pub fn start_asking(socket: PathBuf, ask: Ask, interval: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let samples = samples.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let sample = send(&socket, &ask);
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(sample);
                    if let Some(rest) = interval.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        };
        Probe {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// The answers so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops and returns every answer.
    pub fn finish(mut self) -> Vec<Sample> {
        self.halt();
        self.samples()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One `GET path`, recorded.
pub fn ask(socket: &std::path::Path, path: &str) -> Sample {
    send(socket, &Ask::get(path))
}

/// One request, recorded.
pub fn send(socket: &std::path::Path, ask: &Ask) -> Sample {
    let sent_at = unix_now();
    let started = Instant::now();
    let result = http_request(socket, ask.method, &ask.path, ask.body.as_deref());
    let latency = started.elapsed();
    let answered_at = unix_now();
    let mut sample = Sample {
        path: ask.path.clone(),
        sent_at,
        answered_at,
        latency,
        status: 0,
        token: None,
        expires_at: None,
        error: None,
    };
    match result {
        Ok(response) => {
            sample.status = response.status;
            match response.json() {
                Ok(body) => {
                    if let Some(token) = body["token"].as_str() {
                        sample.token = Some(Token::new(token));
                    }
                    sample.expires_at = body["expires_at"].as_str().and_then(|t| t.parse().ok());
                    sample.error = body["error"].as_str().map(str::to_string);
                }
                Err(_) => sample.error = Some(response.body.chars().take(200).collect()),
            }
        }
        Err(e) => sample.error = Some(format!("{e:#}")),
    }
    sample
}

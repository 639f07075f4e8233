//! GitHub traffic over time: a thread samples the emulator's counters a few times a second, so a
//! test can tell how many mints (and mint attempts, and requests) fell in any window — the
//! "no storm" figures — after the fact.

use crate::github::{EmulatorAdmin, Traffic, unix_now};
use ghapp_testkit::emulator::EmulatorProcess;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Traffic counters sampled over time.
pub struct TrafficLog {
    stop: Arc<AtomicBool>,
    points: Arc<Mutex<Vec<(f64, Traffic)>>>,
    thread: Option<JoinHandle<()>>,
}

impl TrafficLog {
    /// Samples `emulator`'s stats every `interval` until stopped (the emulator must outlive
    /// the log: it is borrowed through an `Arc`).
    pub fn start(emulator: Arc<EmulatorProcess>, interval: Duration) -> TrafficLog {
        let stop = Arc::new(AtomicBool::new(false));
        let points = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let points = points.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(stats) = emulator.typed_stats() {
                        points
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((unix_now(), Traffic::of(&stats)));
                    }
                    std::thread::sleep(interval);
                }
            })
        };
        TrafficLog {
            stop,
            points,
            thread: Some(thread),
        }
    }

    /// The counters at (the last sample at or before) time `at`.
    pub fn at(&self, at: f64) -> Traffic {
        let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        points
            .iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .or(points.first())
            .map(|(_, traffic)| *traffic)
            .unwrap_or_default()
    }

    /// Traffic between two times.
    pub fn between(&self, from: f64, to: f64) -> Traffic {
        self.at(to).since(&self.at(from))
    }

    /// The most traffic in any `window` between `from` and `to` (sliding over the samples):
    /// the peak rate, which an average would hide.
    pub fn peak(&self, from: f64, to: f64, window: f64) -> Traffic {
        let starts: Vec<f64> = {
            let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
            points
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| *t >= from && *t <= to)
                .collect()
        };
        let mut peak = Traffic::default();
        for start in std::iter::once(from).chain(starts) {
            let end = (start + window).min(to.max(start));
            let traffic = self.between(start, end);
            peak.mints = peak.mints.max(traffic.mints);
            peak.mint_attempts = peak.mint_attempts.max(traffic.mint_attempts);
            peak.requests = peak.requests.max(traffic.requests);
        }
        peak
    }

    /// Stops sampling.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TrafficLog {
    fn drop(&mut self) {
        self.stop();
    }
}

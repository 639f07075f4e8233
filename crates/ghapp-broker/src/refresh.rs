//! The [`Refresher`]: the background task that runs the broker's refresh rounds — at the time
//! the token cache says the next token falls due, when the cache's schedule changes, and at
//! least every [`MAX_SLEEP`] (to evict expired entries) — until the broker stops or is dropped.
//!
//! What is due and when a failed refresh is tried again is the token cache's policy
//! (`cache.rs`); what a round does is the broker's (`broker.rs`): the refresher only keeps time.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// The refresher wakes at least this often (to evict expired entries).
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What a refresh round reports.
pub(crate) enum Round {
    /// The broker is gone: stop.
    Gone,
    /// Done; the next token falls due then (`None`: nothing scheduled).
    NextDue(Option<Instant>),
}

/// The background refresh task.
pub(crate) struct Refresher;

impl Refresher {
    /// Starts the task: runs `round` now and whenever it is due, `wake` is notified, or
    /// [`MAX_SLEEP`] has passed; ends when `stop` turns true or `round` reports the broker gone.
    /// `round` should hold the broker weakly, so dropping every handle ends the task too.
    pub(crate) fn spawn(
        mut stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
        round: impl Fn() -> Round + Send + 'static,
    ) {
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                let now = Instant::now();
                let wake_at = match round() {
                    Round::Gone => return,
                    Round::NextDue(next) => next.unwrap_or(now + MAX_SLEEP).min(now + MAX_SLEEP),
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(wake_at) => {}
                    _ = wake.notified() => {}
                    _ = stop.changed() => {}
                }
            }
        });
    }
}

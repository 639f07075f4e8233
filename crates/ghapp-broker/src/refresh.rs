//! The background refresher: re-mints recently used tokens before they fall below `min_ttl`,
//! so callers almost never wait on GitHub, and evicts expired tokens and stale mappings.
//!
//! "Recently used" means served within `refresh_window` (default one hour, so an hourly job
//! finds a fresh token every time). A key is due when its token has less than
//! `min_ttl + refresh_ahead` left; its mint is the same single flight callers join, so a caller
//! arriving mid-refresh waits for that mint instead of starting another. A failed refresh is
//! retried with jittered backoff (1 s doubling to 30 s, and never inside a rate-limit wait)
//! while the old token keeps serving.

use crate::broker::Inner;
use crate::cache::Origin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The refresher wakes at least this often (to evict expired entries).
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Inner {
    /// Starts the refresher. It holds only a weak reference between rounds, so dropping every
    /// broker handle ends it too.
    pub(crate) fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let wake_at = {
                    let Some(inner) = weak.upgrade() else { return };
                    if *stop.borrow() {
                        return;
                    }
                    inner.refresh_round()
                };
                let Some(inner) = weak.upgrade() else { return };
                let notified = inner.tokens_notified();
                drop(inner);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake_at) => {}
                    _ = notified.notified() => {}
                    _ = stop.changed() => {}
                }
            }
        });
    }

    fn tokens_notified(&self) -> Arc<tokio::sync::Notify> {
        self.tokens.wake.clone()
    }

    /// One round: evict, start due refreshes; returns when to look again.
    fn refresh_round(self: &Arc<Self>) -> Instant {
        let now = Instant::now();
        let runtime = self.runtime();
        self.tokens.evict_expired(now);
        self.resolutions.evict(now);
        let (due, next) = self.tokens.refresh_due(now, &runtime.settings);
        for plan in due {
            let started = self.tokens.start_refresh(&plan, |tx| {
                self.spawn_mint(plan.clone(), tx, Origin::Refresh)
            });
            if started {
                tracing::debug!(target = %plan.target, "refreshing a token in the background");
            }
        }
        next.unwrap_or(now + MAX_SLEEP).min(now + MAX_SLEEP)
    }
}

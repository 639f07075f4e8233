//! Each uid's share of the connections: no uid but root and the daemon's own (which could stop
//! the daemon anyway) may hold more than half of `max_connections` (served and waiting
//! together), so one admitted peer — even one whose policy lets it ask for
//! nothing — cannot take every slot and waiting place and starve the others (the second
//! attacker's pass, docs/security.md). Half is far above any real burst of one user's git
//! processes at the default `max_connections` (4096), and leaves the other half to everyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many connections each uid holds now.
#[derive(Debug, Default)]
pub struct UidShares {
    held: Mutex<HashMap<u32, usize>>,
}

/// One connection counted against its uid's share; released when dropped.
#[derive(Debug)]
pub struct UidShare {
    shares: Arc<UidShares>,
    uid: u32,
}

impl UidShares {
    /// The most connections one uid may hold at once, for a daemon serving `max_connections`.
    pub fn limit(max_connections: usize) -> usize {
        (max_connections / 2).max(1)
    }

    /// Counts one more connection for `uid`, or `None` when it already holds `limit`.
    pub fn take(self: &Arc<Self>, uid: u32, limit: usize) -> Option<UidShare> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(uid).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(UidShare {
            shares: self.clone(),
            uid,
        })
    }
}

impl Drop for UidShare {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_holds_at_most_its_share_and_gets_it_back_on_close() {
        let shares = Arc::new(UidShares::default());
        let limit = UidShares::limit(4);
        assert_eq!(limit, 2);
        let a1 = shares.take(1000, limit).unwrap();
        let _a2 = shares.take(1000, limit).unwrap();
        assert!(shares.take(1000, limit).is_none(), "over its share");
        let _b = shares
            .take(1001, limit)
            .expect("another uid has its own share");
        drop(a1);
        assert!(
            shares.take(1000, limit).is_some(),
            "a closed connection frees its place"
        );
        assert_eq!(UidShares::limit(1), 1, "never zero");
    }
}

//! "Zero expired tokens served", checked against the source of truth: every token a caller got
//! is looked up in the emulator's ledger, and its real expiry (emulator clock) is compared with
//! the emulator's clock at the moment the answer arrived. The `expires_at` the daemon stated is
//! checked too: translated to the local clock, it must never promise more life than the token
//! has.

use crate::github::Ledger;
use crate::probe::Sample;

/// What the check found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExpiryCheck {
    /// Answers with a token.
    pub served: usize,
    /// Tokens served with no life left by the emulator's clock (fingerprint and how late).
    pub expired: Vec<String>,
    /// Tokens served that the emulator never issued.
    pub unknown: Vec<String>,
    /// Answers whose `expires_at` promised more than the token's real expiry (over 1 s, the
    /// resolution of `expires_at`).
    pub overstated: Vec<String>,
    /// The least life any served token had left, by the emulator's clock, in seconds.
    pub least_left_secs: Option<f64>,
}

impl ExpiryCheck {
    /// No expired, unknown or overstated token.
    pub fn clean(&self) -> bool {
        self.expired.is_empty() && self.unknown.is_empty() && self.overstated.is_empty()
    }
}

/// Checks every served answer. `clock_offset_secs` is the emulator's clock minus the local one
/// while the samples were taken.
pub fn check(samples: &[Sample], ledger: &Ledger, clock_offset_secs: i64) -> ExpiryCheck {
    let mut result = ExpiryCheck::default();
    let offset = clock_offset_secs as f64;
    for sample in samples.iter().filter(|s| s.served()) {
        let Some(token) = &sample.token else { continue };
        result.served += 1;
        let Some((_, real_expiry)) = ledger.lifetime(token.expose()) else {
            result.unknown.push(token.fingerprint());
            continue;
        };
        let emulator_now = sample.answered_at + offset;
        let left = real_expiry as f64 - emulator_now;
        result.least_left_secs = Some(result.least_left_secs.map_or(left, |l| l.min(left)));
        if left <= 0.0 {
            result.expired.push(format!(
                "{} served {:.1}s after it expired",
                token.fingerprint(),
                -left
            ));
        }
        if let Some(stated) = sample.expires_at.map(|t| t.unix_seconds() as f64)
            && stated > real_expiry as f64 - offset + 1.0
        {
            result.overstated.push(format!(
                "{} stated to expire {:.1}s after it does",
                token.fingerprint(),
                stated - (real_expiry as f64 - offset)
            ));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::secret::Token;
    use github_emulator::admin::{IssuedToken, IssuedTokens};
    use std::time::Duration;

    fn sample(at: f64, token: &str, expires_at: &str) -> Sample {
        Sample {
            path: "/v1/token".into(),
            sent_at: at,
            answered_at: at,
            latency: Duration::ZERO,
            status: 200,
            token: Some(Token::new(token)),
            expires_at: Some(expires_at.parse().unwrap()),
            error: None,
        }
    }

    #[test]
    fn expired_unknown_and_overstated_tokens_are_caught() {
        let mut issued = IssuedTokens::default();
        issued.push(IssuedToken {
            token: "ghs_a".into(),
            kind: "installation".into(),
            installation_id: Some(1),
            created_at: 1_700_000_000,
            expires_at: 1_700_000_060,
        });
        let ledger = Ledger::new(&issued);
        let good = sample(1_700_000_030.0, "ghs_a", "2023-11-14T22:14:20Z");
        let late = sample(1_700_000_061.0, "ghs_a", "2023-11-14T22:14:20Z");
        let stranger = sample(1_700_000_000.0, "ghs_b", "2023-11-14T22:14:20Z");
        let promised = sample(1_700_000_000.0, "ghs_a", "2023-11-14T22:15:00Z");
        let report = check(std::slice::from_ref(&good), &ledger, 0);
        assert!(report.clean(), "{report:?}");
        assert_eq!(report.least_left_secs, Some(30.0));
        assert_eq!(check(&[late], &ledger, 0).expired.len(), 1);
        assert_eq!(check(&[stranger], &ledger, 0).unknown.len(), 1);
        assert_eq!(check(&[promised], &ledger, 0).overstated.len(), 1);
        // The emulator 5 minutes behind: the same token has 5 minutes more by its clock, and
        // stating the emulator's expires_at on the local clock understates it (safe).
        let behind = check(std::slice::from_ref(&good), &ledger, -300);
        assert_eq!(behind.least_left_secs, Some(330.0));
        assert!(behind.clean(), "{behind:?}");
        // The emulator 5 minutes ahead: the token expired by its clock, and the same
        // expires_at on the local clock promises 5 minutes too many.
        let ahead = check(&[good], &ledger, 300);
        assert_eq!(ahead.expired.len(), 1, "{ahead:?}");
        assert_eq!(ahead.overstated.len(), 1, "{ahead:?}");
    }
}

//! Human durations (`30m`, `1h 5m`, `90s`, or bare seconds `1800`) for config keys, socket
//! queries and CLI flags, parsed the same way everywhere.

use std::time::Duration;

/// Why a duration string was refused, with the string itself (never a secret) for context.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 30m, 1h, 90s, 1800)")]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Parses `30m`, `1h30m`, `90s` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    if let Ok(secs) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError {
        input: input.to_string(),
        reason: e.to_string(),
    })
}

/// Formats a duration for people: `29m 59s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// Serde adapter for config fields written as human durations (`min_ttl = "30m"`).
pub mod serde_human {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `30m`.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*value))
    }

    /// Accepts a string (`"30m"`) or an integer number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Secs(secs) => Ok(Duration::from_secs(secs)),
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_and_bare_seconds() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h 5m").unwrap(), Duration::from_secs(3900));
        assert_eq!(parse_duration(" 90 ").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}

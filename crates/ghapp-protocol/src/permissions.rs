//! GitHub App permissions (`contents: write`, `issues: read`, …) as ghapp parses them from
//! config (`{ contents = "write" }`), socket queries (`contents:write,issues:read`) and CLI flags
//! (`--permission contents=write`). One type, one set of rules, so a ceiling set in config and a
//! request made on the socket are compared like for like.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An access level. Ordered: `read < write < admin`, so a ceiling check is a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Read access.
    Read,
    /// Read and write access.
    Write,
    /// Administrative access (only some permissions have it).
    Admin,
}

impl Level {
    /// The level as GitHub spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = PermissionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            "admin" => Ok(Level::Admin),
            other => Err(PermissionError::Level(other.to_string())),
        }
    }
}

/// Why a permission string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// The level is not read, write or admin.
    #[error("invalid permission level {0:?}: expected read, write or admin")]
    Level(String),
    /// The name has characters GitHub permission names never have.
    #[error("invalid permission name {0:?}: expected lowercase letters, digits and '_' (e.g. contents, pull_requests)")]
    Name(String),
    /// An item lacks its separator.
    #[error("invalid permission {0:?}: expected NAME{1}LEVEL (e.g. contents{1}write)")]
    Syntax(String, char),
    /// The same permission was given twice with different levels.
    #[error("permission {0} given twice")]
    Duplicate(String),
}

/// A set of permissions, sorted by name: the cache key and the wire form are canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(BTreeMap<String, Level>);

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Permissions {
    /// No permissions: "whatever the App (or its ceiling) grants".
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one permission, refusing a bad name or a conflicting duplicate.
    pub fn insert(&mut self, name: &str, level: Level) -> Result<(), PermissionError> {
        if !valid_name(name) {
            return Err(PermissionError::Name(name.to_string()));
        }
        match self.0.get(name) {
            Some(existing) if *existing != level => Err(PermissionError::Duplicate(name.to_string())),
            _ => {
                self.0.insert(name.to_string(), level);
                Ok(())
            }
        }
    }

    /// Parses the socket query form `contents:read,issues:write` (empty string: no permissions).
    pub fn parse_list(list: &str) -> Result<Self, PermissionError> {
        let mut perms = Self::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, level) = parse_item(item, ':')?;
            perms.insert(name, level)?;
        }
        Ok(perms)
    }

    /// Parses one CLI flag value, `contents=write` (`:` is accepted too).
    pub fn parse_flag(&mut self, flag: &str) -> Result<(), PermissionError> {
        let separator = if flag.contains('=') { '=' } else { ':' };
        let (name, level) = parse_item(flag.trim(), separator)?;
        self.insert(name, level)
    }

    /// The socket query form, `contents:read,issues:write`, sorted by name.
    pub fn to_list(&self) -> String {
        self.0
            .iter()
            .map(|(name, level)| format!("{name}:{level}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// True when no permission is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The level asked for `name`, if any.
    pub fn get(&self, name: &str) -> Option<Level> {
        self.0.get(name).copied()
    }

    /// Iterates in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Level)> {
        self.0.iter().map(|(name, level)| (name.as_str(), *level))
    }

    /// The first permission in `self` that `ceiling` does not allow (absent, or a lower level),
    /// so errors can name exactly what was refused.
    pub fn first_beyond(&self, ceiling: &Permissions) -> Option<(&str, Level)> {
        self.iter()
            .find(|(name, level)| ceiling.get(name).is_none_or(|allowed| *level > allowed))
    }

    /// True when every permission in `self` is within `other`.
    pub fn is_within(&self, other: &Permissions) -> bool {
        self.first_beyond(other).is_none()
    }
}

fn parse_item(item: &str, separator: char) -> Result<(&str, Level), PermissionError> {
    let (name, level) = item
        .split_once(separator)
        .ok_or_else(|| PermissionError::Syntax(item.to_string(), separator))?;
    let (name, level) = (name.trim(), level.trim());
    if !valid_name(name) {
        return Err(PermissionError::Name(name.to_string()));
    }
    Ok((name, level.parse()?))
}

impl FromIterator<(String, Level)> for Permissions {
    fn from_iter<I: IntoIterator<Item = (String, Level)>>(iter: I) -> Self {
        Permissions(iter.into_iter().collect())
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("(all granted)")
        } else {
            f.write_str(&self.to_list())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trips_sorted() {
        let perms = Permissions::parse_list("issues:write, contents:read").unwrap();
        assert_eq!(perms.to_list(), "contents:read,issues:write");
        assert_eq!(Permissions::parse_list("").unwrap(), Permissions::new());
    }

    #[test]
    fn refuses_bad_items_with_reasons() {
        assert_eq!(
            Permissions::parse_list("contents").unwrap_err(),
            PermissionError::Syntax("contents".into(), ':')
        );
        assert!(matches!(Permissions::parse_list("contents:owner"), Err(PermissionError::Level(_))));
        assert!(matches!(Permissions::parse_list("Contents:read"), Err(PermissionError::Name(_))));
        assert!(matches!(
            Permissions::parse_list("contents:read,contents:write"),
            Err(PermissionError::Duplicate(_))
        ));
    }

    #[test]
    fn flags_accept_equals_or_colon() {
        let mut perms = Permissions::new();
        perms.parse_flag("contents=write").unwrap();
        perms.parse_flag("issues:read").unwrap();
        assert_eq!(perms.to_list(), "contents:write,issues:read");
    }

    #[test]
    fn ceiling_names_the_first_excess() {
        let ceiling = Permissions::parse_list("contents:write,issues:read").unwrap();
        assert!(Permissions::parse_list("contents:read").unwrap().is_within(&ceiling));
        let over = Permissions::parse_list("issues:write").unwrap();
        assert_eq!(over.first_beyond(&ceiling), Some(("issues", Level::Write)));
        let absent = Permissions::parse_list("pull_requests:read").unwrap();
        assert_eq!(absent.first_beyond(&ceiling), Some(("pull_requests", Level::Read)));
    }

    #[test]
    fn toml_map_form() {
        #[derive(Deserialize)]
        struct C {
            permissions: Permissions,
        }
        let c: C = toml::from_str(r#"permissions = { contents = "write", metadata = "read" }"#).unwrap();
        assert_eq!(c.permissions.to_list(), "contents:write,metadata:read");
    }
}

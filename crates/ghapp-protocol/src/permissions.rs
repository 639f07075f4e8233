//! GitHub App permissions (`contents: write`, `issues: read`, …) as ghapp parses them from
//! config (`{ contents = "write" }`), socket queries (`contents:read,issues:write`) and CLI flags
//! (`--permission contents=write`). One type, one set of rules, so a ceiling set in config and a
//! request made on the socket are compared like for like.
//!
//! The daemon keeps several sets per cached token (the cache key, the request, the grant), so a
//! set is compact: GitHub's documented permission names are small ids whose levels pack into two
//! bits each of two words — no heap at all — and only names outside that table (new ones GitHub
//! adds, or whatever a config file says) are kept as strings, in a sorted list behind one box.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
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
    #[error(
        "invalid permission name {0:?}: expected lowercase letters, digits and '_' (e.g. contents, pull_requests)"
    )]
    Name(String),
    /// An item lacks its separator.
    #[error("invalid permission {0:?}: expected NAME{1}LEVEL (e.g. contents{1}write)")]
    Syntax(String, char),
    /// The same permission was given twice with different levels.
    #[error("permission {0} given twice")]
    Duplicate(String),
}

/// GitHub's documented permission names, sorted; a name's index is its id in
/// [`Permissions::known`]. At most 64 (two bits each in two words); names GitHub adds later
/// still work, kept as strings.
const KNOWN: [&str; 54] = [
    "actions",
    "administration",
    "artifact_metadata",
    "attestations",
    "checks",
    "codespaces",
    "contents",
    "custom_properties_for_organizations",
    "dependabot_secrets",
    "deployments",
    "discussions",
    "email_addresses",
    "enterprise_custom_properties_for_organizations",
    "environments",
    "followers",
    "git_ssh_keys",
    "gpg_keys",
    "interaction_limits",
    "issues",
    "members",
    "merge_queues",
    "metadata",
    "organization_administration",
    "organization_announcement_banners",
    "organization_copilot_agent_settings",
    "organization_copilot_seat_management",
    "organization_custom_org_roles",
    "organization_custom_properties",
    "organization_custom_roles",
    "organization_events",
    "organization_hooks",
    "organization_packages",
    "organization_personal_access_token_requests",
    "organization_personal_access_tokens",
    "organization_plan",
    "organization_projects",
    "organization_secrets",
    "organization_self_hosted_runners",
    "organization_user_blocking",
    "packages",
    "pages",
    "profile",
    "pull_requests",
    "repository_custom_properties",
    "repository_hooks",
    "repository_projects",
    "secret_scanning_alerts",
    "secrets",
    "security_events",
    "single_file",
    "starring",
    "statuses",
    "vulnerability_alerts",
    "workflows",
];

/// Known names per word of [`Permissions::known`].
const SLOTS_PER_WORD: usize = 32;

/// A level in two bits; 0 is "absent".
fn level_bits(level: Level) -> u64 {
    match level {
        Level::Read => 1,
        Level::Write => 2,
        Level::Admin => 3,
    }
}

fn level_of_bits(bits: u64) -> Option<Level> {
    match bits & 3 {
        1 => Some(Level::Read),
        2 => Some(Level::Write),
        3 => Some(Level::Admin),
        _ => None,
    }
}

/// A set of permissions, sorted by name: the cache key and the wire form are canonical.
///
/// Serialized as a map `{"contents": "write"}` (a TOML table, a JSON object), iterated,
/// listed, compared and ordered by name exactly like a `BTreeMap<String, Level>`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// The levels of the [`KNOWN`] names, two bits per id (see [`level_bits`]). A known name is
    /// only ever here, so equal sets have equal fields.
    known: [u64; 2],
    /// Any other names, sorted and unique (empty: no allocation).
    other: Box<[(Box<str>, Level)]>,
}

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
        match self.get(name) {
            Some(existing) if existing != level => {
                Err(PermissionError::Duplicate(name.to_string()))
            }
            _ => {
                self.set(name, level);
                Ok(())
            }
        }
    }

    /// Sets `name` to `level` whatever it was, without checking the name (deserialization and
    /// `FromIterator` take any name, the last level winning, as a map does).
    fn set(&mut self, name: &str, level: Level) {
        if let Ok(id) = KNOWN.binary_search(&name) {
            let (word, shift) = (id / SLOTS_PER_WORD, (id % SLOTS_PER_WORD) * 2);
            self.known[word] = (self.known[word] & !(3 << shift)) | (level_bits(level) << shift);
            return;
        }
        match self
            .other
            .binary_search_by(|(other, _)| (**other).cmp(name))
        {
            Ok(at) => self.other[at].1 = level,
            Err(at) => {
                let mut other = std::mem::take(&mut self.other).into_vec();
                other.insert(at, (name.into(), level));
                self.other = other.into_boxed_slice();
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
        self.iter()
            .map(|(name, level)| format!("{name}:{level}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// True when no permission is named.
    pub fn is_empty(&self) -> bool {
        self.known == [0, 0] && self.other.is_empty()
    }

    /// The level asked for `name`, if any.
    pub fn get(&self, name: &str) -> Option<Level> {
        if let Ok(id) = KNOWN.binary_search(&name) {
            let (word, shift) = (id / SLOTS_PER_WORD, (id % SLOTS_PER_WORD) * 2);
            return level_of_bits(self.known[word] >> shift);
        }
        self.other
            .binary_search_by(|(other, _)| (**other).cmp(name))
            .ok()
            .map(|at| self.other[at].1)
    }

    /// Iterates in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Level)> {
        let mut known = self.iter_known().peekable();
        let mut other = self
            .other
            .iter()
            .map(|(name, level)| (&**name, *level))
            .peekable();
        // Both are sorted and share no name: merge them.
        std::iter::from_fn(move || match (known.peek(), other.peek()) {
            (Some(k), Some(o)) if o.0 < k.0 => other.next(),
            (Some(_), _) => known.next(),
            (None, _) => other.next(),
        })
    }

    /// The known names present, in name (= id) order.
    fn iter_known(&self) -> impl Iterator<Item = (&'static str, Level)> {
        let words = self.known;
        (0..words.len()).flat_map(move |word| {
            let mut bits = words[word];
            std::iter::from_fn(move || {
                while bits != 0 {
                    let slot = bits.trailing_zeros() as usize / 2;
                    let level = level_of_bits(bits >> (slot * 2));
                    bits &= !(3 << (slot * 2));
                    if let (Some(name), Some(level)) =
                        (KNOWN.get(word * SLOTS_PER_WORD + slot), level)
                    {
                        return Some((*name, level));
                    }
                }
                None
            })
        })
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
    /// Any names; a name given twice keeps its last level (as collecting into a map does).
    fn from_iter<I: IntoIterator<Item = (String, Level)>>(iter: I) -> Self {
        let mut perms = Permissions::new();
        for (name, level) in iter {
            perms.set(&name, level);
        }
        perms
    }
}

impl PartialOrd for Permissions {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Permissions {
    /// By (name, level) pairs in name order, as a `BTreeMap<String, Level>` orders.
    fn cmp(&self, other: &Self) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for Permissions {
    /// `Permissions({"contents": Write})`, as the map it stands for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct AsMap<'a>(&'a Permissions);
        impl fmt::Debug for AsMap<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.iter()).finish()
            }
        }
        f.debug_tuple("Permissions").field(&AsMap(self)).finish()
    }
}

impl Serialize for Permissions {
    /// A map of name to level, in name order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Permissions {
    /// A map of name to level; names are not checked and a repeated name keeps its last level,
    /// as with a plain map.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, Level>::deserialize(deserializer)?
            .into_iter()
            .collect())
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
        assert!(matches!(
            Permissions::parse_list("contents:owner"),
            Err(PermissionError::Level(_))
        ));
        assert!(matches!(
            Permissions::parse_list("Contents:read"),
            Err(PermissionError::Name(_))
        ));
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
        assert!(
            Permissions::parse_list("contents:read")
                .unwrap()
                .is_within(&ceiling)
        );
        let over = Permissions::parse_list("issues:write").unwrap();
        assert_eq!(over.first_beyond(&ceiling), Some(("issues", Level::Write)));
        let absent = Permissions::parse_list("pull_requests:read").unwrap();
        assert_eq!(
            absent.first_beyond(&ceiling),
            Some(("pull_requests", Level::Read))
        );
    }

    #[test]
    fn toml_map_form() {
        #[derive(Deserialize)]
        struct C {
            permissions: Permissions,
        }
        let c: C =
            toml::from_str(r#"permissions = { contents = "write", metadata = "read" }"#).unwrap();
        assert_eq!(c.permissions.to_list(), "contents:write,metadata:read");
    }

    #[test]
    fn known_table_is_sorted_and_fits() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN.len() <= 2 * SLOTS_PER_WORD);
        assert!(KNOWN.iter().all(|name| valid_name(name)));
        assert!(std::mem::size_of::<Permissions>() <= 32);
    }

    #[test]
    fn unknown_names_sort_among_known_ones() {
        let perms = Permissions::parse_list(
            "zz_new:read,contents:write,aaa:admin,issues:read,metadatb:write",
        )
        .unwrap();
        assert_eq!(
            perms.to_list(),
            "aaa:admin,contents:write,issues:read,metadatb:write,zz_new:read"
        );
        assert_eq!(perms.get("aaa"), Some(Level::Admin));
        assert_eq!(perms.get("metadata"), None);
        assert_eq!(perms.get("zz_new"), Some(Level::Read));
        let mut again = perms.clone();
        again.insert("zz_new", Level::Read).unwrap();
        assert_eq!(again, perms);
        assert_eq!(
            again.insert("zz_new", Level::Write),
            Err(PermissionError::Duplicate("zz_new".into()))
        );
    }

    #[test]
    fn serde_debug_and_order_as_a_map() {
        let perms = Permissions::parse_list("workflows:write,actions:read,odd_one:admin").unwrap();
        let json = serde_json::to_string(&perms).unwrap();
        assert_eq!(
            json,
            r#"{"actions":"read","odd_one":"admin","workflows":"write"}"#
        );
        assert_eq!(serde_json::from_str::<Permissions>(&json).unwrap(), perms);
        assert_eq!(
            format!("{perms:?}"),
            r#"Permissions({"actions": Read, "odd_one": Admin, "workflows": Write})"#
        );
        // Like a map: any name, the last of a repeated name wins.
        let lax: Permissions =
            serde_json::from_str(r#"{"Odd":"read","contents":"read","contents":"write"}"#).unwrap();
        assert_eq!(lax.to_list(), "Odd:read,contents:write");
        assert!(serde_json::from_str::<Permissions>(r#"{"contents":"owner"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn behaves_like_a_sorted_map(
            items in proptest::collection::vec(
                (proptest::sample::select(vec!["actions", "contents", "metadata", "workflows", "zzz", "abc", "pull_requests", "organization_plan", "x_1"]), 0u8..3),
                0..12,
            ),
            others in proptest::collection::vec(
                (proptest::sample::select(vec!["contents", "abc", "statuses", "issues", "zzz"]), 0u8..3),
                0..6,
            ),
        ) {
            let level = |l: u8| [Level::Read, Level::Write, Level::Admin][l as usize];
            let model: BTreeMap<String, Level> = items.iter().map(|(n, l)| (n.to_string(), level(*l))).collect();
            let perms: Permissions = items.iter().map(|(n, l)| (n.to_string(), level(*l))).collect();
            let listed: Vec<(String, Level)> = perms.iter().map(|(n, l)| (n.to_string(), l)).collect();
            let expected: Vec<(String, Level)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(listed, expected);
            for name in ["actions", "contents", "zzz", "nope", "statuses"] {
                proptest::prop_assert_eq!(perms.get(name), model.get(name).copied());
            }
            proptest::prop_assert_eq!(perms.is_empty(), model.is_empty());
            proptest::prop_assert_eq!(serde_json::to_string(&perms).unwrap(), serde_json::to_string(&model).unwrap());
            let other_model: BTreeMap<String, Level> = others.iter().map(|(n, l)| (n.to_string(), level(*l))).collect();
            let other: Permissions = others.iter().map(|(n, l)| (n.to_string(), level(*l))).collect();
            proptest::prop_assert_eq!(perms.cmp(&other), model.cmp(&other_model));
            proptest::prop_assert_eq!(perms == other, model == other_model);
            let beyond_model = model.iter().find(|(n, l)| other_model.get(*n).is_none_or(|a| *l > a)).map(|(n, l)| (n.as_str(), *l));
            proptest::prop_assert_eq!(perms.first_beyond(&other), beyond_model);
        }
    }
}

//! `[[client]]` keys: a presented key is hashed (SHA-256) and compared with every configured
//! digest in constant time (`subtle`), all of them each time, so neither the answer's timing
//! nor an early exit tells how much of a digest matched. The keys themselves are never held.

use ghapp_protocol::client_key;
use ghapp_protocol::config::ClientConfig;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The configured clients: name and key digest.
#[derive(Clone, Default)]
pub struct ClientKeys {
    clients: Vec<(Arc<str>, [u8; 32])>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a digest is not the key, but nothing about keys belongs in logs.
        f.debug_list()
            .entries(self.clients.iter().map(|(name, _)| name))
            .finish()
    }
}

impl ClientKeys {
    /// From the validated `[[client]]` entries (a digest that does not parse is an error).
    pub fn from_config(clients: &[ClientConfig]) -> Result<ClientKeys, String> {
        let clients = clients
            .iter()
            .map(|client| {
                client_key::parse_digest(&client.key_sha256)
                    .map(|digest| (Arc::from(client.name.as_str()), digest))
                    .ok_or_else(|| {
                        format!(
                            "[[client]] {}: key_sha256 is not 64 hex characters",
                            client.name
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ClientKeys { clients })
    }

    /// True when no client is configured.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The name of the client whose key this is.
    pub fn identify(&self, key: &str) -> Option<Arc<str>> {
        let presented = client_key::digest(key);
        let mut found = None;
        for (name, digest) in &self.clients {
            if bool::from(digest.ct_eq(&presented)) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_matched_by_digest() {
        let keys = ClientKeys::from_config(&[
            ClientConfig {
                name: "ci-bot".into(),
                key_sha256: client_key::digest_hex("ghk_one"),
            },
            ClientConfig {
                name: "deployer".into(),
                key_sha256: client_key::digest_hex("ghk_two").to_uppercase(),
            },
        ])
        .unwrap();
        assert_eq!(keys.identify("ghk_one").as_deref(), Some("ci-bot"));
        assert_eq!(keys.identify("ghk_two").as_deref(), Some("deployer"));
        assert_eq!(keys.identify("ghk_three"), None);
        assert_eq!(keys.identify(""), None);
        assert!(!format!("{keys:?}").contains(&client_key::digest_hex("ghk_one")));
    }
}

//! The shared cache's store on Redis (or Valkey), through redis-rs: its tokio
//! `ConnectionManager` reconnects by itself; rustls (aws-lc-rs) for `rediss://`.
//!
//! A few commands, each bounded by `[cache] timeout`: `GET` + `PTTL` (a value and its life
//! left), `SET … PX` (store with expiry), `SET … NX PX` (claim a mint), a compare-and-delete
//! script (release only one's own claim), `DEL` (a token GitHub refused).

use super::{Store, StoreError, StoreFuture};
use crate::config::CacheConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Deletes the claim only if it is still the caller's (it may have expired and been taken).
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Redis through one multiplexed, self-reconnecting connection.
pub(crate) struct RedisStore {
    manager: ConnectionManager,
    /// `redis://HOST:PORT`, no credentials.
    address: String,
}

impl RedisStore {
    /// A store for `config.redis_url` (connected on first use, so a Redis that is down at start
    /// only means this replica starts on its own).
    pub(crate) fn connect(config: &CacheConfig) -> Result<RedisStore, String> {
        let url = config.redis_url.as_str();
        let scheme = if url.starts_with("rediss://") {
            "rediss"
        } else {
            "redis"
        };
        // redis-rs errors quote no URL; the password stays out of messages either way.
        let client = match &config.ca_file {
            Some(ca) => {
                let root_cert = std::fs::read(ca)
                    .map_err(|e| format!("cannot read cache.ca_file {}: {e}", ca.display()))?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(url),
        }
        .map_err(|e| format!("cache.redis_url is not a Redis URL the client accepts: {e}"))?;
        let address = format!("{scheme}://{}", client.get_connection_info().addr());
        // A connection attempt and a command get `[cache] timeout` (the caller's own deadline
        // is the same; this one frees the connection's slot): Redis is near, or as good as down.
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, settings)
            .map_err(|e| format!("cannot set up the Redis connection to {address}: {e}"))?;
        Ok(RedisStore { manager, address })
    }
}

fn failed(error: redis::RedisError) -> StoreError {
    StoreError(error.to_string())
}

impl Store for RedisStore {
    fn get(&self, key: String) -> StoreFuture<'_, Option<(Vec<u8>, Duration)>> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            // PTTL: -2 gone meanwhile, -1 no expiry (never written so by ghapp): no value.
            Ok(value
                .filter(|_| pttl > 0)
                .map(|v| (v, Duration::from_millis(pttl as u64))))
        })
    }

    fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn claim(&self, key: String, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(set.is_some())
        })
    }

    fn release(&self, key: String, owner: String) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let _: i64 = redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(&key)
                .arg(&owner)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn delete(&self, key: String) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        let mut connection = self.manager.clone();
        Box::pin(async move {
            let _: String = redis::cmd("PING")
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn describe(&self) -> &str {
        &self.address
    }
}

//! A small OIDC issuer for tests: discovery and JWKS over HTTP on 127.0.0.1 (every request
//! counted), and signing keys (RS256, ES256) generated in the test.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A tiny issuer: `/{name}/.well-known/openid-configuration` and `/{name}/jwks`, counting
/// every request.
pub struct Issuers {
    pub base: String,
    jwks: Arc<Mutex<HashMap<String, String>>>,
    hits: Arc<AtomicUsize>,
}

impl Issuers {
    pub async fn start() -> Issuers {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let jwks: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (sets, counter, root) = (jwks.clone(), hits.clone(), base.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (sets, counter, root) = (sets.clone(), counter.clone(), root.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let path = request.uri().path().to_string();
                        let (name, rest) = path
                            .trim_start_matches('/')
                            .split_once('/')
                            .unwrap_or(("", ""));
                        let body = match rest {
                            ".well-known/openid-configuration" => Some(format!(
                                r#"{{"issuer":"{root}/{name}","jwks_uri":"{root}/{name}/jwks"}}"#
                            )),
                            "jwks" => sets.lock().unwrap().get(name).cloned(),
                            _ => None,
                        };
                        let response = match body {
                            Some(body) => Response::new(Full::new(Bytes::from(body))),
                            None => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Issuers { base, jwks, hits }
    }

    pub fn issuer(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    pub fn publish(&self, name: &str, keys: &[&SigningKey]) {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.public.clone()).collect(),
        };
        self.jwks
            .lock()
            .unwrap()
            .insert(name.to_string(), serde_json::to_string(&set).unwrap());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A signing key and its public JWK (with its kid).
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub private: EncodingKey,
    pub public: Jwk,
    /// The public key's PEM (the secret of the HS256 confusion attack).
    pub public_pem: String,
}

impl SigningKey {
    pub fn new(kid: &str, alg: Algorithm) -> SigningKey {
        let (pair, private) = match alg {
            Algorithm::RS256 => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
                let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
                (pair, key)
            }
            _ => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
                (pair, key)
            }
        };
        let mut public = Jwk::from_encoding_key(&private, alg).unwrap();
        public.common.key_id = Some(kid.to_string());
        SigningKey {
            kid: kid.to_string(),
            alg,
            private,
            public,
            public_pem: pair.public_key_pem(),
        }
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).unwrap()
    }
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

pub fn claims(issuer: &str, audience: &str, subject: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now() - 10,
        "nbf": now() - 10,
        "exp": now() + 600,
        "repository": "acme/widgets",
        "repository_owner": "acme",
        "kubernetes.io": {"namespace": "ci-7"},
    })
}

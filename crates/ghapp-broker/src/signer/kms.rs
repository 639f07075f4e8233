//! `signer = "aws_kms"`: the App's key in AWS KMS. The JWT's signing input goes to KMS's `Sign`
//! API (`RSASSA_PKCS1_V1_5_SHA_256`, `MessageType: RAW`); the key never leaves KMS.
//!
//! The request is signed with SigV4 by the `aws-sigv4` crate and sent with reqwest — not the
//! AWS SDK's KMS client, whose build (aws-config, the smithy runtime, hyper 0.14 or its own
//! connector stack) would outweigh the one call made here. The region and credentials come from
//! `aws_profile.rs` (the environment, then the shared profile files), the region last from the
//! key's ARN; instance roles and SSO are not read (docs/keys.md).

use super::aws_profile;
use super::{SignError, Signer};
use crate::config::AppConfig;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ghapp_protocol::secret::fingerprint;
use std::time::{Duration, SystemTime};

/// A key in AWS KMS.
pub struct KmsSigner {
    key_id: String,
    region: String,
    endpoint: String,
    timeout: Duration,
    client: reqwest::Client,
    describe: String,
    fingerprint: String,
}

impl KmsSigner {
    /// A signer for the KMS key `key_id` (id, alias or ARN) of `app`.
    pub fn new(app: &AppConfig, key_id: &str) -> Result<Self, String> {
        let describe = format!("AWS KMS key {key_id}");
        let region = aws_profile::region(&process_env)
            .map_err(|e| format!("{describe}: {e}"))?
            .or_else(|| region_of_arn(key_id))
            .ok_or_else(|| {
                format!(
                    "{describe}: no region: set AWS_REGION, a region in the AWS profile, or give the key's ARN"
                )
            })?;
        let endpoint = app
            .kms_endpoint_url
            .clone()
            .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
        let client = reqwest::Client::builder()
            .timeout(app.sign_timeout)
            .build()
            .map_err(|e| format!("{describe}: cannot build an HTTP client: {e}"))?;
        Ok(KmsSigner {
            fingerprint: fingerprint(&format!("aws_kms\0{endpoint}\0{key_id}")),
            key_id: key_id.to_string(),
            region,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            timeout: app.sign_timeout,
            client,
            describe,
        })
    }

    /// The `Sign` call: SigV4-signed headers, then the POST on the runtime this blocking
    /// thread belongs to.
    fn call_sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let identity = aws_profile::credentials(&process_env)?.into();
        let body = serde_json::to_vec(&serde_json::json!({
            "KeyId": self.key_id,
            "Message": STANDARD.encode(input),
            "MessageType": "RAW",
            "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
        }))
        .map_err(|e| format!("encoding the request: {e}"))?;
        let url = format!("{}/", self.endpoint);
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.Sign"),
        ];
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("kms")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("SigV4 parameters: {e}"))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| format!("SigV4: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("SigV4: {e}"))?
            .into_parts();
        let mut request = self.client.post(&url).body(body);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "no async runtime to send the request on".to_string())?;
        let (status, text) = runtime.block_on(async {
            let response = request.send().await.map_err(|e| format!("{e}"))?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|e| format!("{e}"))?;
            Ok::<_, String>((status, text))
        })?;
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status != 200 {
            let kind = answer["__type"].as_str().unwrap_or("no error type");
            let message = answer["message"]
                .as_str()
                .or(answer["Message"].as_str())
                .unwrap_or("");
            return Err(format!("KMS answered HTTP {status}: {kind}: {message}"));
        }
        let signature = answer["Signature"]
            .as_str()
            .ok_or("KMS's answer has no Signature")?;
        STANDARD
            .decode(signature)
            .map_err(|e| format!("KMS's Signature is not base64: {e}"))
    }
}

impl Signer for KmsSigner {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.call_sign(input).map_err(|e| SignError::new(self, e))
    }

    fn describe(&self) -> &str {
        &self.describe
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn wait_limit(&self) -> Option<Duration> {
        // reqwest's own timeout ends the call; this only guards the runtime hand-off.
        Some(self.timeout + Duration::from_secs(1))
    }
}

/// The daemon's environment, as `aws_profile` looks things up.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The region of a KMS key ARN (`arn:aws:kms:eu-west-1:123456789012:key/…`).
fn region_of_arn(key_id: &str) -> Option<String> {
    let mut parts = key_id.split(':');
    (parts.next()? == "arn").then_some(())?;
    let _partition = parts.next()?;
    (parts.next()? == "kms").then_some(())?;
    parts.next().filter(|r| !r.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_arn() {
        assert_eq!(
            region_of_arn("arn:aws:kms:eu-west-1:123456789012:key/1234abcd").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("1234abcd-12ab"), None);
        assert_eq!(region_of_arn("arn:aws:s3:::bucket"), None);
    }
}

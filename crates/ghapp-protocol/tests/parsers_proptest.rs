//! Property tests for the two parsers that face untrusted input: git's credential request (the
//! helper's stdin) and the socket API's query string (any local peer). Both must never panic, and
//! what they accept must round-trip.

use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::credential::{self, CredentialRequest, MAX_LINE_BYTES};
use ghapp_protocol::permissions::Permissions;
use proptest::prelude::*;
use std::time::Duration;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn credential_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = credential::parse_request(&input);
    }

    #[test]
    fn credential_parser_never_panics_on_line_soup(
        lines in proptest::collection::vec("[a-z\\[\\]_]{0,12}(=[ -~]{0,40})?", 0..20)
    ) {
        let input = lines.join("\n");
        let _ = credential::parse_request(input.as_bytes());
    }

    #[test]
    fn well_formed_requests_round_trip(
        protocol in "https?",
        host in "[a-z0-9.-]{1,40}(:[0-9]{1,5})?",
        path in proptest::option::of("[A-Za-z0-9._-]{1,20}/[A-Za-z0-9._-]{1,20}(\\.git)?"),
        noise in proptest::collection::vec("(capability\\[\\]|wwwauth\\[\\]|state\\[\\]|x_future)=[ -~]{0,30}", 0..5),
    ) {
        let mut text = String::new();
        for n in &noise {
            text.push_str(n);
            text.push('\n');
        }
        text.push_str(&format!("protocol={protocol}\nhost={host}\n"));
        if let Some(p) = &path {
            text.push_str(&format!("path={p}\n"));
        }
        text.push('\n');
        let parsed = credential::parse_request(text.as_bytes()).unwrap();
        prop_assert_eq!(parsed, CredentialRequest {
            protocol: Some(protocol),
            host: Some(host),
            path,
            ..Default::default()
        });
    }

    #[test]
    fn overlong_lines_are_refused_not_truncated(extra in 1usize..64) {
        let mut input = b"host=".to_vec();
        input.resize(MAX_LINE_BYTES + extra, b'a');
        input.push(b'\n');
        prop_assert!(credential::parse_request(&input).is_err());
    }

    #[test]
    fn query_parser_never_panics(query in "[ -~]{0,300}") {
        let _ = TokenQuery::parse(&query);
    }

    #[test]
    fn valid_queries_round_trip(
        host in proptest::option::of("[a-z0-9.-]{1,30}(:[0-9]{1,5})?"),
        owner in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,38}",
        repo in proptest::option::of("[A-Za-z0-9_-][A-Za-z0-9._-]{0,38}"),
        perms in proptest::collection::btree_map("[a-z_]{1,20}", prop_oneof!["read", "write", "admin"], 0..4),
        ttl in proptest::option::of(0u64..100_000),
    ) {
        let list = perms.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",");
        let query = TokenQuery {
            host,
            owner: Some(owner),
            repo,
            permissions: Permissions::parse_list(&list).unwrap(),
            min_ttl: ttl.map(Duration::from_secs),
            protocol: None,
        };
        prop_assert_eq!(TokenQuery::parse(&query.to_query_string()).unwrap(), query);
    }
}

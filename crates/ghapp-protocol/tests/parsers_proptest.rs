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

    /// Found by the cargo-fuzz target credential_request: `url=` components are percent-decoded,
    /// and `%00`/`%0a` must not smuggle a NUL or newline into a value (git refuses those too).
    #[test]
    fn accepted_requests_hold_no_newline_or_nul(
        scheme in "[a-z]{1,6}",
        parts in proptest::collection::vec(prop_oneof!["[a-z0-9./:@]{0,8}", Just("%00".to_string()), Just("%0a".to_string()), Just("%0A".to_string())], 0..8),
    ) {
        let input = format!("url={scheme}://{}\n\n", parts.concat());
        if let Ok(request) = credential::parse_request(input.as_bytes()) {
            for value in [&request.protocol, &request.host, &request.path, &request.username].into_iter().flatten() {
                prop_assert!(!value.contains(['\n', '\0']), "{:?} from {:?}", value, input);
            }
            if let Some(password) = &request.password {
                prop_assert!(!password.expose().contains(['\n', '\0']), "password from {:?}", input);
            }
        }
    }

    /// Found by the cargo-fuzz target token_query: `min_ttl=6ns` parsed as 6 ns but encoded as
    /// 0 s. A least-remaining-life is rounded up to whole seconds (the resolution of
    /// `expires_at`) on both sides, so it never shrinks on the way to the daemon.
    #[test]
    fn sub_second_min_ttl_rounds_up_to_whole_seconds(millis in 0u64..10_000_000) {
        let query = TokenQuery {
            owner: Some("acme".into()),
            min_ttl: Some(Duration::from_millis(millis)),
            ..TokenQuery::default()
        };
        let whole = Duration::from_secs(millis.div_ceil(1000));
        let parsed = TokenQuery::parse(&query.to_query_string()).unwrap();
        prop_assert_eq!(parsed.min_ttl, Some(whole));
        let direct = TokenQuery::parse(&format!("owner=acme&min_ttl={millis}ms")).unwrap();
        prop_assert_eq!(direct.min_ttl, Some(whole));
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

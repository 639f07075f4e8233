//! The 60-second soak in the normal test run (`scripts/soak.sh DURATION` runs it longer):
//! mixed load with 10-second tokens — API clients, helper processes, `ghapp token`, git — and
//! zero failed requests, zero expired tokens served, flat daemon RSS and open files. The report
//! goes to `$CARGO_TARGET_TMPDIR/ghapp-reliability/soak.jsonl`.

use ghapp_reliability::figures;
use ghapp_reliability::soak::{self, SoakOptions};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn a_minute_of_mixed_load_fails_nothing_and_stays_flat() {
    let report = soak::run(&SoakOptions::new(Duration::from_secs(60))).expect("the soak ran");
    let dir =
        figures::figures_dir(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ghapp-reliability"));
    figures::write(
        &dir,
        "soak.jsonl",
        &[serde_json::to_value(&report).expect("report")],
    )
    .expect("figures");
    if let Err(problems) = report.verdict() {
        panic!("the soak failed:\n{}", problems.join("\n"));
    }
    // Hundreds of refresh cycles: eleven keys of 10-second tokens over a minute.
    assert!(
        report.github.mints >= 100,
        "only {} mints: the soak did not cycle tokens",
        report.github.mints
    );
    assert!(
        report.expiry.served >= 1000,
        "{} tokens served",
        report.expiry.served
    );
}

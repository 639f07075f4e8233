//! Reliability and security checks for ghapp, with figures (docs/reliability.md,
//! docs/security.md). The tests in `tests/` drive real processes — the GitHub emulator with its
//! fault knobs, `ghapp daemon`, `git-credential-ghapp`, `ghapp` — and this library holds what
//! they share:
//!
//! - [`stack`]: an emulator and a daemon configured for it with second-scale token lifetimes;
//! - [`github`]: the emulator's admin side seen from a test: typed faults and stats, its clock,
//!   and the ledger of every token it issued;
//! - [`probe`]: a caller asking the daemon for a token at a steady rate, recording every answer;
//! - [`expiry`]: checks every served token against the ledger and the emulator's clock;
//! - [`rate`]: GitHub traffic (mints, mint attempts, all requests) sampled over time;
//! - [`scenario`]: one fault start to finish — inject, hold, clear, recover — and its figures;
//! - [`figures`]: measured figures as JSON lines under the target dir, and printed;
//! - [`process`]: resident memory of a process, and the open-files limit;
//! - [`soak`]: the mixed-load soak driver behind `scripts/soak.sh` and the 60-second test.

pub mod expiry;
pub mod figures;
pub mod github;
pub mod probe;
pub mod process;
pub mod rate;
pub mod scenario;
pub mod soak;
pub mod stack;

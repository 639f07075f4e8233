//! Shared test support: real processes, real sockets, temp dirs that clean up after themselves.
//!
//! - [`binary`]: the path of a workspace binary built by `cargo test --workspace`.
//! - [`elf`]: whether a built binary is statically linked.
//! - [`emulator`]: start `github-emulator` as a process from a fixture.
//! - [`daemon`]: start `ghapp daemon` as a process against a config.
//! - [`git`]: a throwaway HOME and a `git` command wired to `credential.helper ghapp`.
//! - [`pki`]: a private CA and loopback server certificates (TLS Redis, a TLS broker).
//! - [`redis`]: a `redis-server` of the test's own, plain or TLS-only.
//! - [`system`]: commands fed their stdin, tools on PATH, fake tools, throwaway users.

pub mod daemon;
pub mod elf;
pub mod emulator;
pub mod git;
pub mod pki;
pub mod redis;
pub mod signers;
pub mod system;

use std::path::PathBuf;

/// The directory holding this build's binaries (`target/debug`), found from the running test
/// executable (`target/debug/deps/<test>`), so a custom CARGO_TARGET_DIR works too.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of a workspace binary (`ghapp`, `git-credential-ghapp`, `github-emulator`).
/// `cargo test --workspace` builds every binary before running any test; running one package's
/// tests alone needs `cargo build --workspace --bins` first, which this message says.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

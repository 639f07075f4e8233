//! `ghapp`: the daemon and the CLI. All work happens in the command modules.

mod cli;
mod commands;

fn main() {
    one_malloc_arena();
    let cli = <cli::Cli as clap::Parser>::parse();
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("ghapp: {error:#}");
            std::process::exit(1);
        }
    }
}

/// One glibc malloc arena for the process instead of one per thread that allocates (up to 8 per
/// core): the daemon's cached tokens are allocated by whichever tokio worker ran their mint, and
/// each arena keeps its own free holes resident, so two workers' arenas hold more than one
/// (measured: docs/benchmarks-findings.md). The
/// workers still allocate without contention from glibc's per-thread cache. A
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; mallopt only sets
        // one of the allocator's tunables.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

//! `pbx-teams-presence`: parse the command line and hand over to [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    cli::Cli::parse().run()
}

/// glibc gives each thread that allocates an arena of its own; with the runtime's threads and
/// the store thread that multiplies fragmentation. Two arenas cut the peak RSS at 50,000 users
/// from 122 MB to 93 MB (README, Performance). `MALLOC_ARENA_MAX` in the environment wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

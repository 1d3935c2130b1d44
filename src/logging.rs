//! Logging: journald when started by systemd with the journal attached (`JOURNAL_STREAM`),
//! plain stderr otherwise; the filter can be changed at run time (`log.level`).

use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// Changes the log filter at run time (hot reload of `log.level`).
pub type LogReload = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Dependencies are quiet unless asked for.
const QUIET_DEPS: &str = "hyper=warn,reqwest=warn,rustls=warn,h2=warn";

/// Install the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init(level: &str) -> LogReload {
    let from_env = std::env::var("RUST_LOG").ok();
    let filter = build_filter(from_env.as_deref().unwrap_or(level));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|l| {
            // Fields keep their own names (EXTENSION, EMAIL, TEAMS_USER, ...): `journalctl -u
            // pbx-teams-presence EXTENSION=1001` filters as the docs say.
            l.with_syslog_identifier("pbx-teams-presence".into())
                .with_field_prefix(None)
        });
    let output: Box<dyn Layer<Registry> + Send + Sync> = match journald {
        Some(journald) => journald.boxed(),
        None => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init();
    Arc::new(move |level: &str| {
        if from_env.is_some() {
            return Err("RUST_LOG is set and wins over log.level".into());
        }
        handle
            .reload(build_filter(level))
            .map_err(|e| e.to_string())
    })
}

fn build_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(format!("{QUIET_DEPS},{level}")).unwrap_or_else(|_| EnvFilter::new("info"))
}

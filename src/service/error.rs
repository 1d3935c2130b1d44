//! Why the daemon could not start or stopped badly; each cause is its own variant, carried as
//! a value up to `main`, which prints it.

use crate::config::ConfigError;
use crate::graph::GraphError;
use crate::metrics::server::MetricsError;
use crate::store::StoreError;

use super::connector::ConnectorError;
use super::notify::NotifyError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The config or users file is invalid: fix the named key or line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state database cannot be used: check `sync.state_db`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Graph client cannot be built.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The PBX connector cannot start: check the `[pbx]` section.
    #[error(transparent)]
    Pbx(#[from] ConnectorError),
    /// Change notifications cannot start: check the `[notifications]` section.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The metrics listener cannot start: check `metrics.listen`.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// TLS to PostgreSQL cannot be set up (`[store]`).
    #[error("cannot set up TLS to PostgreSQL: {0}")]
    Tls(String),
    /// `[ha]`: the task keeping the leader lease ended before the node did (a bug).
    #[error("the leader lease task ended unexpectedly")]
    LeaseTaskEnded,
    /// A start-up step run off the runtime (reading files, opening the database) panicked or
    /// was cancelled.
    #[error("{step} did not finish: {source}")]
    Join {
        step: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ServiceError {
    /// For `map_err` on a `spawn_blocking` join.
    pub fn join(step: &'static str) -> impl FnOnce(tokio::task::JoinError) -> ServiceError {
        move |source| ServiceError::Join { step, source }
    }
}

//! The leader's right to act outward ([`Fence`]): checked by every adapter right before it
//! changes something outside the process (a Graph write, a push to the PBX). Without `[ha]`
//! the fence is always open. With `[ha]`, the lease task opens it for a term (epoch) until a
//! deadline on the monotonic clock and moves the deadline at each renewal; a frozen or
//! partitioned leader finds it shut the moment it runs again, before any write leaves
//! (docs/high-availability.md, "Fencing").

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::time::Instant;

/// Shared by clones; cheap to check (two atomic loads and the clock).
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` without `[ha]`: always open.
    node: Option<String>,
    /// The origin of `until_us`.
    base: Instant,
    /// Open until `base` + this many microseconds (0: shut).
    until_us: AtomicU64,
    /// The term the fence is open for.
    epoch: AtomicI64,
}

/// A write the fence refused: this node is not (or no longer surely) the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node} does not hold the leader lease (last epoch {epoch}); nothing is written")]
pub struct Fenced {
    pub node: String,
    pub epoch: i64,
}

impl Default for Fence {
    fn default() -> Fence {
        Fence::open()
    }
}

impl Fence {
    /// Always open (a single node).
    pub fn open() -> Fence {
        Fence::make(None)
    }

    /// Shut until [`Fence::extend`] opens it: a node of a pair.
    pub fn for_node(node: &str) -> Fence {
        Fence::make(Some(node.to_owned()))
    }

    fn make(node: Option<String>) -> Fence {
        Fence {
            inner: Arc::new(Inner {
                node,
                base: crate::clock::monotonic(),
                until_us: AtomicU64::new(0),
                epoch: AtomicI64::new(0),
            }),
        }
    }

    /// Open (or keep open) for `epoch` until `until`.
    pub fn extend(&self, epoch: i64, until: Instant) {
        let us = until.saturating_duration_since(self.inner.base).as_micros();
        self.inner.epoch.store(epoch, Ordering::SeqCst);
        self.inner
            .until_us
            .store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Shut now (stepping down, or shutting down).
    pub fn shut(&self) {
        self.inner.until_us.store(0, Ordering::SeqCst);
    }

    /// `Ok(epoch)` (0 without `[ha]`) when this node may act now.
    pub fn check(&self) -> Result<i64, Fenced> {
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        let Some(node) = &self.inner.node else {
            return Ok(epoch);
        };
        let now = crate::clock::monotonic().saturating_duration_since(self.inner.base);
        let until = self.inner.until_us.load(Ordering::SeqCst);
        if u128::from(until) > now.as_micros() {
            Ok(epoch)
        } else {
            Err(Fenced {
                node: node.clone(),
                epoch,
            })
        }
    }

    /// This node's name under `[ha]`.
    pub fn node(&self) -> Option<&str> {
        self.inner.node.as_deref()
    }

    /// The `User-Agent` of Graph writes: the version, and under `[ha]` the node and its
    /// epoch, so Graph's logs (and the emulator's) tell which node wrote in which term.
    pub fn user_agent(&self) -> String {
        let version = concat!("pbx-teams-presence/", env!("CARGO_PKG_VERSION"));
        match &self.inner.node {
            None => version.to_owned(),
            Some(node) => {
                let epoch = self.inner.epoch.load(Ordering::SeqCst);
                format!("{version} (node {node}; epoch {epoch})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn without_ha_the_fence_is_always_open() {
        let f = Fence::open();
        assert_eq!(f.check(), Ok(0));
        f.shut();
        assert_eq!(f.check(), Ok(0));
        assert_eq!(
            f.user_agent(),
            concat!("pbx-teams-presence/", env!("CARGO_PKG_VERSION"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_acts_only_inside_its_term() {
        let f = Fence::for_node("pbx1");
        let shut = Fenced {
            node: "pbx1".into(),
            epoch: 0,
        };
        assert_eq!(f.check(), Err(shut));
        f.extend(7, crate::clock::monotonic() + Duration::from_secs(8));
        assert_eq!(f.check(), Ok(7));
        assert!(f.user_agent().ends_with("(node pbx1; epoch 7)"));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(
            f.check(),
            Err(Fenced {
                node: "pbx1".into(),
                epoch: 7
            })
        );
        f.extend(7, crate::clock::monotonic() + Duration::from_secs(8));
        assert_eq!(f.check(), Ok(7));
        f.shut();
        assert!(f.check().is_err());
    }
}

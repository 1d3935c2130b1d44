//! The journal lines of `[ha]`: who leads, from whom, and why, once each.

use crate::ha::lease::{Previous, Why};

pub fn standing_by(node: &str) {
    tracing::info!(
        node,
        "node {node} started as a standby: it leads when the leader lease is free"
    );
}

pub fn leads(node: &str, epoch: i64, previous: Option<&Previous>) {
    let Some(p) = previous else {
        tracing::info!(
            node,
            epoch,
            "node {node} leads (epoch {epoch}): it is the first leader of this database"
        );
        return;
    };
    let from = &p.node;
    if from == node {
        tracing::info!(node, epoch, "node {node} leads again (epoch {epoch})");
    } else if p.released {
        tracing::warn!(node, epoch, from = %from, previous_epoch = p.epoch,
            "node {node} takes over from {from} (epoch {epoch}): {from} stopped and gave the lease up");
    } else {
        let ago = humantime::format_duration(std::time::Duration::from_millis(
            u64::try_from(p.expired_for.as_millis()).unwrap_or(u64::MAX),
        ));
        tracing::warn!(node, epoch, from = %from, previous_epoch = p.epoch, expired_ms = p.expired_for.as_millis(),
            "node {node} takes over from {from} (epoch {epoch}): {from} stopped renewing its lease, which ran out {ago} ago");
    }
}

pub fn steps_down(node: &str, epoch: i64, why: &Why) {
    match why {
        Why::Taken(holder) if holder.node == node || holder.node.is_empty() => {
            tracing::warn!(
                node,
                epoch,
                "node {node} steps down (epoch {epoch}): its lease ran out before a renewal reached the database; it writes nothing until it leads again"
            );
        }
        Why::Taken(holder) => {
            let other = &holder.node;
            tracing::warn!(node, epoch, holder = %other, holder_epoch = holder.epoch,
                "node {node} steps down (epoch {epoch}): {other} holds the lease now (epoch {})", holder.epoch);
        }
        Why::Unconfirmed { last_error } => {
            let error = last_error.as_deref().unwrap_or("no answer");
            tracing::warn!(
                node,
                epoch,
                error,
                "node {node} steps down (epoch {epoch}): its lease could not be renewed in time ({error}); it writes nothing until it leads again"
            );
        }
    }
}

pub fn handing_over(node: &str, standby: &str) {
    tracing::info!(
        node,
        standby,
        "node {node} stops; standby {standby} takes the sessions over"
    );
}

//! Rich notification items already taken, per subscription, so that a replayed item (the same
//! encrypted content again: a delivery Graph repeats, or a batch someone captured and posts
//! again while its validation token lives) changes nothing. Basic items carry nothing to tell
//! two changes of one user apart; a repeated one only makes the daemon read the presence.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::sync::types::{Millis, millis};

/// An item is remembered this long: longer than a validation token lives (an hour), so a
/// replay with a token still valid is always recognised; an older one fails on its token.
pub(super) const REMEMBER: Duration = Duration::from_secs(2 * 3600);
/// Most items remembered per subscription (16 bytes each, plus the index); the oldest go
/// first when more arrive within [`REMEMBER`].
pub(super) const MAX_PER_SUBSCRIPTION: usize = 8192;

/// What identifies an item: the first 16 bytes of SHA-256 of its decoded ciphertext (a fresh
/// key per item makes every item's ciphertext differ; a changed one fails its HMAC).
pub(super) type Identity = [u8; 16];

/// The remembered items of every current subscription.
#[derive(Debug, Default)]
pub(super) struct Replays {
    subscriptions: HashMap<String, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<Identity>,
    /// The same identities, oldest first, with when they came.
    order: VecDeque<(Identity, Millis)>,
}

impl Replays {
    /// True the first time `id` comes for `subscription` (it is remembered); false when it
    /// came before.
    pub(super) fn first(&mut self, subscription: &str, id: Identity, now: Millis) -> bool {
        let seen = self
            .subscriptions
            .entry(subscription.to_owned())
            .or_default();
        seen.forget_before(now.saturating_sub(millis(REMEMBER)));
        if !seen.ids.insert(id) {
            return false;
        }
        seen.order.push_back((id, now));
        if seen.order.len() > MAX_PER_SUBSCRIPTION
            && let Some((old, _)) = seen.order.pop_front()
        {
            seen.ids.remove(&old);
        }
        true
    }

    /// Forget the subscriptions `live` no longer names.
    pub(super) fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.subscriptions.retain(|id, _| live(id));
    }

    #[cfg(test)]
    fn remembered(&self, subscription: &str) -> usize {
        self.subscriptions
            .get(subscription)
            .map_or(0, |s| s.ids.len())
    }
}

impl Seen {
    fn forget_before(&mut self, cutoff: Millis) {
        while let Some(&(old, at)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
    }
}

/// The identity of a rich item's `encryptedContent`: its decoded `data` (the string itself
/// when it is not base64: such an item does not decrypt anyway).
pub(super) fn identity(encrypted: &serde_json::Value) -> Identity {
    let data = encrypted["data"].as_str().unwrap_or_default();
    let bytes = STANDARD
        .decode(data)
        .unwrap_or_else(|_| data.as_bytes().to_vec());
    let digest = Sha256::digest(&bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: Millis = 60_000;

    #[test]
    fn an_item_is_taken_once_per_subscription() {
        let mut r = Replays::default();
        let a = identity(&json!({"data": "AAAA", "dataKey": "x"}));
        let b = identity(&json!({"data": "AAAB", "dataKey": "x"}));
        assert!(r.first("s1", a, 0));
        assert!(!r.first("s1", a, MIN), "the same item again");
        assert!(r.first("s1", b, MIN));
        assert!(
            r.first("s2", a, MIN),
            "another subscription's list is its own"
        );
        // The key wrapped for it does not make it another item.
        let a2 = identity(&json!({"data": "AAAA", "dataKey": "y"}));
        assert!(!r.first("s1", a2, 2 * MIN));
    }

    #[test]
    fn items_are_forgotten_after_a_while_and_beyond_the_bound() {
        let mut r = Replays::default();
        let id = |n: usize| {
            let mut i = [0u8; 16];
            i[..8].copy_from_slice(&n.to_le_bytes());
            i
        };
        assert!(r.first("s", id(0), 0));
        let later = millis(REMEMBER) + 1;
        assert!(r.first("s", id(0), later), "remembered for REMEMBER only");
        for n in 1..=MAX_PER_SUBSCRIPTION {
            assert!(r.first("s", id(n), later));
        }
        assert_eq!(r.remembered("s"), MAX_PER_SUBSCRIPTION);
        assert!(r.first("s", id(0), later), "the oldest made room");
        r.retain(|s| s != "s");
        assert_eq!(r.remembered("s"), 0);
    }
}

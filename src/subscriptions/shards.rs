//! Which subscription account covers which users. Pure.
//!
//! Each account holds one presence subscription of at most 650 ids
//! (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>). The
//! assignment is kept stable: a user stays with their account while both last, departed users
//! leave, new users fill free places in account order. Every shard that changes costs a new
//! subscription (its filter cannot be patched), so few should change.

use std::collections::HashSet;
use std::sync::Arc;

/// One account's users, in a stable order.
pub type Shard = Vec<Arc<str>>;

/// The new shards (one per account, empty for an account that cannot hold one) and the users
/// left for polling. `current[i]` is what account `i` covers now; `usable[i]` whether it can
/// hold a subscription at all (it has a working token).
pub fn assign(
    current: &[Shard],
    usable: &[bool],
    wanted: &[Arc<str>],
    capacity: usize,
) -> (Vec<Shard>, Vec<Arc<str>>) {
    let wanted_set: HashSet<&str> = wanted.iter().map(|id| &**id).collect();
    let mut placed: HashSet<Arc<str>> = HashSet::new();
    let mut shards: Vec<Shard> = usable
        .iter()
        .enumerate()
        .map(|(i, ok)| {
            if !ok {
                return Vec::new();
            }
            let kept: Shard = current
                .get(i)
                .into_iter()
                .flatten()
                .filter(|id| wanted_set.contains(&***id) && !placed.contains(*id))
                .take(capacity)
                .cloned()
                .collect();
            placed.extend(kept.iter().cloned());
            kept
        })
        .collect();
    let mut polled = Vec::new();
    let mut next = 0;
    for id in wanted {
        if placed.contains(id) {
            continue;
        }
        while next < shards.len() && (!usable[next] || shards[next].len() >= capacity) {
            next += 1;
        }
        match shards.get_mut(next) {
            Some(shard) => {
                shard.push(id.clone());
                placed.insert(id.clone());
            }
            None => polled.push(id.clone()),
        }
    }
    (shards, polled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<usize>) -> Vec<Arc<str>> {
        range.map(|i| Arc::from(format!("u{i:04}"))).collect()
    }

    #[test]
    fn users_fill_accounts_in_order_and_the_rest_is_polled() {
        let (shards, polled) = assign(&[], &[true, true], &ids(0..1400), 650);
        assert_eq!(shards[0].len(), 650);
        assert_eq!(shards[1].len(), 650);
        assert_eq!(polled.len(), 100);
        assert_eq!(&*polled[0], "u1300");
    }

    #[test]
    fn a_change_of_users_moves_nobody_else() {
        let all = ids(0..20);
        let (before, _) = assign(&[], &[true, true], &all, 10);
        // u0003 leaves, u0020 arrives: only the first shard changes, and only there.
        let mut now: Vec<Arc<str>> = all.iter().filter(|i| &***i != "u0003").cloned().collect();
        now.push(Arc::from("u0020"));
        let (after, polled) = assign(&before, &[true, true], &now, 10);
        assert!(polled.is_empty());
        assert_eq!(after[1], before[1]);
        assert!(after[0].iter().any(|i| &**i == "u0020"));
        assert!(!after[0].iter().any(|i| &**i == "u0003"));
    }

    #[test]
    fn an_unusable_account_hands_its_users_to_others_or_to_polling() {
        let all = ids(0..15);
        let (before, _) = assign(&[], &[true, true], &all, 10);
        let (after, polled) = assign(&before, &[false, true], &all, 10);
        assert!(after[0].is_empty());
        assert_eq!(after[1].len(), 10, "the second account fills up");
        assert_eq!(polled.len(), 5);
        let covered: HashSet<&str> = after[1].iter().map(|i| &**i).collect();
        assert!(
            before[1].iter().all(|i| covered.contains(&**i)),
            "its own users stay"
        );
    }
}

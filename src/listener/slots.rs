//! The connection cap of one listener, with the oldest idle connection shed to make room.
//!
//! A connection is *idle* while it is not inside a request: its TLS handshake, waiting for
//! (the rest of) a request header, or kept alive between requests. Busy connections are never
//! shed. When every place is taken, a new connection takes the place of the one idle the
//! longest (its task is told to close at once); when none is idle, the new one is refused.
//! A flood of half-sent headers thus turns over among itself, and a request that arrives
//! whole is served.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The places of one listener.
#[derive(Debug)]
pub struct Slots {
    cap: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Places taken (a shed connection's place is its successor's at once).
    open: usize,
    /// Numbers connections and idle periods, in order.
    next: u64,
    /// Idle connections by when they became idle: (idle since) -> connection.
    idle: BTreeMap<u64, u64>,
    /// Connections holding a place: connection -> its state.
    held: HashMap<u64, Held>,
}

#[derive(Debug)]
struct Held {
    /// The key in `State::idle`, while idle.
    idle_since: Option<u64>,
    shed: CancellationToken,
}

/// The answer to a new connection.
#[derive(Debug)]
pub enum Admission {
    /// A free place.
    Free(Slot),
    /// The place of the connection idle the longest, which has been told to close.
    Shed(Slot),
    /// Every place is taken by a busy connection.
    Full,
}

/// One connection's place; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    shed: CancellationToken,
}

/// The connection is inside a request until this is dropped.
#[derive(Debug)]
pub struct Busy<'a>(&'a Slot);

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            state: Mutex::default(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections holding a place.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// A place for a new connection (idle, until its first request), if one can be had.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        let shed = if state.open < self.cap {
            state.open += 1;
            false
        } else if state.shed_oldest_idle() {
            true
        } else {
            return Admission::Full;
        };
        let id = state.number();
        let since = state.number();
        let token = CancellationToken::new();
        state.idle.insert(since, id);
        state.held.insert(
            id,
            Held {
                idle_since: Some(since),
                shed: token.clone(),
            },
        );
        drop(state);
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            shed: token,
        };
        if shed {
            Admission::Shed(slot)
        } else {
            Admission::Free(slot)
        }
    }

    /// Tell the connection idle the longest to close (no free descriptor for a new one).
    pub fn shed_one(&self) -> bool {
        let mut state = self.lock();
        if state.shed_oldest_idle() {
            state.open -= 1;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing is awaited under the lock, and a panic under it leaves the counts whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Tell the oldest idle connection to close; its place stays counted in `open`.
    fn shed_oldest_idle(&mut self) -> bool {
        let Some((_, id)) = self.idle.pop_first() else {
            return false;
        };
        if let Some(held) = self.held.remove(&id) {
            held.shed.cancel();
        }
        true
    }
}

impl Slot {
    /// Fires when this connection was shed: close it now.
    pub fn shed(&self) -> &CancellationToken {
        &self.shed
    }

    /// The connection is inside a request (not to be shed) until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        let mut state = self.slots.lock();
        if let Some(since) = state
            .held
            .get_mut(&self.id)
            .and_then(|h| h.idle_since.take())
        {
            state.idle.remove(&since);
        }
        Busy(self)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.0.slots.lock();
        let since = state.number();
        let id = self.0.id;
        let Some(held) = state.held.get_mut(&id) else {
            return; // shed meanwhile
        };
        held.idle_since = Some(since);
        state.idle.insert(since, id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        // A shed connection's place went to its successor when it was shed.
        if let Some(held) = state.held.remove(&self.id) {
            if let Some(since) = held.idle_since {
                state.idle.remove(&since);
            }
            state.open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(a: Admission) -> Slot {
        match a {
            Admission::Free(s) | Admission::Shed(s) => s,
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn a_free_place_is_taken_until_the_cap() {
        let slots = Slots::new(2);
        let a = slots.admit();
        let b = slots.admit();
        assert!(matches!((&a, &b), (Admission::Free(_), Admission::Free(_))));
        assert_eq!(slots.open(), 2);
        drop(a);
        assert_eq!(slots.open(), 1);
        assert!(matches!(slots.admit(), Admission::Free(_)));
    }

    #[test]
    fn the_connection_idle_the_longest_is_shed_first_and_busy_ones_never() {
        let slots = Slots::new(3);
        let a = take(slots.admit());
        let b = take(slots.admit());
        let c = take(slots.admit());
        // a served a request and is idle again: now the most recently idle.
        drop(a.busy());
        let busy_c = c.busy();
        let d = slots.admit();
        assert!(matches!(d, Admission::Shed(_)));
        assert!(b.shed().is_cancelled(), "b was idle the longest");
        assert!(!a.shed().is_cancelled() && !c.shed().is_cancelled());
        let e = slots.admit();
        assert!(matches!(e, Admission::Shed(_)));
        assert!(a.shed().is_cancelled(), "then a");
        let (d, e) = (take(d), take(e));
        let (busy_d, busy_e) = (d.busy(), e.busy());
        assert!(
            matches!(slots.admit(), Admission::Full),
            "only busy ones left"
        );
        assert!(!c.shed().is_cancelled() && !d.shed().is_cancelled());
        drop((busy_d, busy_e));
        drop(busy_c);
        assert!(matches!(slots.admit(), Admission::Shed(_)));
        assert!(d.shed().is_cancelled(), "d idle again first");
        assert!(!c.shed().is_cancelled());
    }

    #[test]
    fn shed_connections_give_their_place_away_once() {
        let slots = Slots::new(1);
        let a = take(slots.admit());
        let b = take(slots.admit());
        assert!(a.shed().is_cancelled());
        assert_eq!(slots.open(), 1);
        drop(a);
        assert_eq!(slots.open(), 1, "a's place is b's");
        drop(b);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn shedding_for_a_descriptor_frees_a_place() {
        let slots = Slots::new(2);
        let a = take(slots.admit());
        let _b = take(slots.admit());
        assert!(slots.shed_one());
        assert!(a.shed().is_cancelled());
        assert_eq!(slots.open(), 1);
        drop(a);
        assert_eq!(slots.open(), 1);
        let _busy = _b.busy();
        assert!(!slots.shed_one(), "nothing idle");
    }
}

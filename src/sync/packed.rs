//! The engine's compact per-user storage: [`Packed`], a Teams presence in two bytes, and
//! [`Owners`], the extensions that share one Teams id. 50,000 users: every byte per user counts.

use std::borrow::Cow;

use super::mapping::{KNOWN_ACTIVITIES, KNOWN_AVAILABILITIES};
use std::sync::Arc;

use super::types::TeamsPresence;

/// A Teams presence in two bytes when both values are documented ones (nearly always), boxed
/// otherwise: two of them per user, for 50,000 users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Packed {
    Known(u8, u8),
    Other(Box<TeamsPresence>),
}

impl Packed {
    pub(super) fn pack(p: &TeamsPresence) -> Packed {
        let index = |list: &[&str], value: &str| {
            list.iter()
                .position(|k| *k == value)
                .and_then(|i| u8::try_from(i).ok())
        };
        match (
            index(KNOWN_AVAILABILITIES, &p.availability),
            index(KNOWN_ACTIVITIES, &p.activity),
        ) {
            (Some(a), Some(b)) => Packed::Known(a, b),
            _ => Packed::Other(Box::new(p.clone())),
        }
    }

    pub(super) fn unpack(&self) -> TeamsPresence {
        match self {
            Packed::Known(a, b) => TeamsPresence {
                availability: Cow::Borrowed(
                    KNOWN_AVAILABILITIES
                        .get(usize::from(*a))
                        .copied()
                        .unwrap_or("PresenceUnknown"),
                ),
                activity: Cow::Borrowed(
                    KNOWN_ACTIVITIES
                        .get(usize::from(*b))
                        .copied()
                        .unwrap_or("PresenceUnknown"),
                ),
            },
            Packed::Other(p) => (**p).clone(),
        }
    }
}

/// The extensions of one Teams user, sorted: almost always one, so no vector for it. Each is
/// the engine's own key of the user (shared, not copied).
#[derive(Debug, Clone)]
pub(super) enum Owners {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Owners {
    /// Add an extension, keeping them sorted so that "the first" is the same on every run.
    pub(super) fn push(&mut self, extension: Arc<str>) {
        match self {
            Owners::One(one) => {
                let mut all = vec![Arc::clone(one), extension];
                all.sort();
                *self = Owners::Many(all);
            }
            Owners::Many(all) => {
                let at = all.partition_point(|e| *e < extension);
                all.insert(at, extension);
            }
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, Arc<str>> {
        match self {
            Owners::One(one) => std::slice::from_ref(one).iter(),
            Owners::Many(all) => all.iter(),
        }
    }

    pub(super) fn first(&self) -> Option<&Arc<str>> {
        self.iter().next()
    }
}

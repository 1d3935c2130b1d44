//! The directory as the core sees it (users file entries joined with their Teams matches), and
//! the bookkeeping of lookup rounds: which answers changed a match, when the next round is due,
//! which addresses wait for one. Plain data: the main loop owns it, the resolver task does the
//! lookups.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::Directory;
use crate::graph::{GraphError, MatchedBy, UserMatch};
use crate::sync::engine::UserSpec;
use crate::sync::table::Table;
use crate::sync::types::{MatchStatus, Millis, millis};

/// Retries of a failed lookup round: 5 s doubling up to 5 min, with jitter.
const RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

/// What we know of one e-mail address in Teams. Kept for every user (50,000 of them), so
/// the common case (matched) carries no text of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchInfo {
    /// Shared with the engine and the poll list (one allocation per user, not four).
    pub teams_id: Option<Arc<str>>,
    pub status: MatchStatus,
    pub detail: Option<Cow<'static, str>>,
}

impl MatchInfo {
    pub fn from_graph(m: &UserMatch) -> MatchInfo {
        let (teams_id, status, detail) = match m {
            UserMatch::Matched { id, via, .. } => (
                Some(Arc::from(id.as_str())),
                MatchStatus::Matched,
                Cow::Borrowed(match via {
                    MatchedBy::Mail => "by mail",
                    MatchedBy::Upn => "by userPrincipalName",
                    MatchedBy::ProxyAddress => "by proxy address",
                }),
            ),
            UserMatch::NotFound => (
                None,
                MatchStatus::NotFound,
                Cow::Borrowed("no Teams user has this mail, UPN or proxy address"),
            ),
            UserMatch::Unchecked => (
                None,
                MatchStatus::Error,
                Cow::Borrowed("Graph refused the proxyAddresses lookup for this address"),
            ),
            UserMatch::Duplicate { ids } => (
                None,
                MatchStatus::Duplicate,
                Cow::Owned(format!(
                    "{} Teams users share this address: {}",
                    ids.len(),
                    ids.join(", ")
                )),
            ),
        };
        MatchInfo {
            teams_id,
            status,
            detail: Some(detail),
        }
    }

    /// A match remembered by the store.
    pub fn from_store(
        teams_id: Option<String>,
        status: MatchStatus,
        detail: Option<String>,
    ) -> MatchInfo {
        MatchInfo {
            teams_id: teams_id.map(Arc::from),
            status,
            detail: detail.map(Cow::Owned),
        }
    }
}

/// E-mail (lowercase) -> match, one sorted vector (a hash map of 250,000 addresses would grow
/// to 524,288 buckets). Filled in bulk: a round's answers are merged in batches.
#[derive(Debug, Default)]
pub struct Matches(Table<MatchInfo>);

impl Matches {
    /// Matches from (e-mail, match) pairs in any order; a repeated e-mail takes the last.
    pub fn from_pairs(pairs: Vec<(String, MatchInfo)>) -> Matches {
        let mut m = Matches::default();
        m.extend(pairs.into_iter().map(|(k, v)| (Arc::from(k), v)).collect());
        m
    }

    pub fn get(&self, email: &str) -> Option<&MatchInfo> {
        self.0.get(email)
    }

    pub fn contains_key(&self, email: &str) -> bool {
        self.0.contains_key(email)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().next().is_none()
    }

    fn extend(&mut self, more: Vec<(Arc<str>, MatchInfo)>) {
        self.0.extend(more);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Answers of a running round merged into [`Matches`] at once, at the latest.
const MERGE_EVERY: usize = 32_768;

/// The core's view of the directory.
pub fn user_specs<'a>(
    directory: &'a Directory,
    matches: &'a Matches,
) -> impl Iterator<Item = UserSpec> + 'a {
    directory.entries.iter().map(|e| UserSpec {
        extension: e.extension.clone(),
        email: e.email.clone(),
        teams_id: matches.get(&e.email).and_then(|m| m.teams_id.clone()),
        direction: e.direction,
    })
}

/// Every distinct e-mail of the directory, sorted (one address may serve two extensions).
pub fn all_emails(directory: &Directory) -> Vec<Arc<str>> {
    let mut emails: Vec<Arc<str>> = directory.entries.iter().map(|e| e.email.clone()).collect();
    emails.sort_unstable();
    emails.dedup();
    emails
}

/// The matches, and where the lookup rounds stand. At most one round runs at a time;
/// addresses asked for meanwhile wait in `waiting` and go with the next round.
#[derive(Debug, Default)]
pub struct Matching {
    pub matches: Matches,
    /// Answers of the running round not merged into `matches` yet (a round's addresses are
    /// unique, so the round compares its answers with the matches from before it).
    pending: Vec<(Arc<str>, MatchInfo)>,
    /// E-mails whose match changed in the running round: the keys of `pending` (shared, not
    /// copied); sorted and made unique when the round ends.
    changes: Vec<Arc<str>>,
    /// E-mails for the next round (sorted and made unique when it starts).
    waiting: Vec<Arc<str>>,
    /// The running round's e-mails, sorted: the answers' keys are taken from here, so the
    /// matches share the directory's allocation of each address.
    round: Arc<[Arc<str>]>,
    /// The round generation; answers of an older one (before an `[azure]` change) are dropped.
    generation: u64,
    /// Whether a round runs.
    busy: bool,
    /// Whether the running round is a full one (every address).
    full: bool,
    /// True once a round went through (READY=1 waits for it).
    pub matched_once: bool,
    /// When the next full round is due (`sync.resolve_interval`, sooner after a failure).
    next_at: Millis,
    failures: u32,
}

/// How a lookup round ended, for the main loop.
#[derive(Debug, Default)]
pub struct RoundEnd {
    /// The e-mails whose match changed (to apply now), sorted.
    pub changed: Vec<Arc<str>>,
    /// The retry delay, when the round failed.
    pub retry: Option<Duration>,
    /// A full round went through: the store records when, so a restart does not look every
    /// address up again before `sync.resolve_interval` has passed.
    pub full: bool,
}

/// When the first full lookup round is due at start: `every` after the last one a previous
/// run finished (`looked_up`, from the store), or at once when there is none for this tenant,
/// nothing cached, or the clock went back.
pub fn first_full_round(
    cached: bool,
    looked_up: Option<Millis>,
    now: Millis,
    every: Duration,
) -> Millis {
    match looked_up {
        Some(at) if cached && at <= now => (at + millis(every)).max(now),
        _ => now,
    }
}

/// A lookup round for the resolver task.
#[derive(Debug)]
pub struct Lookup {
    pub generation: u64,
    /// Sorted, unique.
    pub emails: Arc<[Arc<str>]>,
}

impl Matching {
    pub fn new(matches: Matches, first_full_round_at: Millis) -> Matching {
        Matching {
            matches,
            next_at: first_full_round_at,
            ..Matching::default()
        }
    }

    /// Ask for these addresses to be looked up (with the next round).
    pub fn want(&mut self, emails: impl IntoIterator<Item = Arc<str>>) {
        self.waiting.extend(emails);
    }

    /// The directory's addresses without a match yet.
    pub fn want_unresolved(&mut self, directory: &Directory) {
        let missing: Vec<Arc<str>> = directory
            .entries
            .iter()
            .filter(|e| !self.matches.contains_key(&e.email))
            .map(|e| e.email.clone())
            .collect();
        self.want(missing);
    }

    /// Forget every match and every answer under way (new tenant or app); the directory is
    /// looked up again.
    pub fn restart(&mut self, directory: &Directory) {
        self.generation += 1;
        self.matches.clear();
        self.pending.clear();
        self.changes.clear();
        self.waiting = all_emails(directory);
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a round runs (ready waits for none to run).
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The next round to start, if none runs and some addresses wait (a full round when one
    /// is due at `now`).
    pub fn next_round(
        &mut self,
        directory: &Directory,
        now: Millis,
        every: Duration,
    ) -> Option<Lookup> {
        if self.busy {
            return None;
        }
        if now >= self.next_at {
            self.next_at = now + millis(every);
            // A full round: every address, whatever was waiting.
            self.waiting = all_emails(directory);
            self.full = true;
        }
        if self.waiting.is_empty() {
            return None;
        }
        self.busy = true;
        let mut emails = std::mem::take(&mut self.waiting);
        emails.sort_unstable();
        emails.dedup();
        self.round = emails.into();
        Some(Lookup {
            generation: self.generation,
            emails: Arc::clone(&self.round),
        })
    }

    /// Answers of the running round: remembered; returns how many changed a match.
    pub fn on_chunk(&mut self, generation: u64, results: Vec<(String, UserMatch)>) -> usize {
        if generation != self.generation {
            return 0;
        }
        let mut changed = 0;
        for (email, m) in results {
            // Nothing learnt: keep the match this address had (a user on a call stays matched).
            if m == UserMatch::Unchecked && self.matches.contains_key(&email) {
                continue;
            }
            let info = MatchInfo::from_graph(&m);
            if self.matches.get(&email) == Some(&info) {
                continue;
            }
            let email = self.shared(email);
            self.changes.push(Arc::clone(&email));
            self.pending.push((email, info));
            changed += 1;
        }
        if self.pending.len() >= MERGE_EVERY {
            self.merge();
        }
        changed
    }

    /// The round's own copy of `email` (Graph answers with the addresses it was asked for).
    fn shared(&self, email: String) -> Arc<str> {
        match self.round.binary_search_by(|e| (**e).cmp(email.as_str())) {
            Ok(i) => Arc::clone(&self.round[i]),
            Err(_) => Arc::from(email),
        }
    }

    /// The round's answers so far into `matches`.
    fn merge(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.matches.extend(pending);
    }

    /// The round ended: what changed (sorted), whether it was a full round, and when to retry
    /// if it failed.
    pub fn on_done(
        &mut self,
        generation: u64,
        result: &Result<(), GraphError>,
        now: Millis,
    ) -> RoundEnd {
        self.busy = false;
        self.round = Arc::from([]);
        let full = std::mem::take(&mut self.full);
        if generation != self.generation {
            return RoundEnd::default();
        }
        self.merge();
        let retry = match result {
            Ok(()) => {
                self.matched_once = true;
                self.failures = 0;
                None
            }
            Err(_) => {
                self.failures = self.failures.saturating_add(1);
                let wait = RETRY.delay(self.failures).max(Duration::from_secs(1));
                self.next_at = now + millis(wait);
                Some(wait)
            }
        };
        let mut changed = std::mem::take(&mut self.changes);
        changed.sort_unstable();
        changed.dedup();
        RoundEnd {
            changed,
            retry,
            full: full && result.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_users;

    fn strs(emails: &[Arc<str>]) -> Vec<&str> {
        emails.iter().map(|e| &**e).collect()
    }

    fn matched(id: &str) -> UserMatch {
        UserMatch::Matched {
            id: id.into(),
            upn: "u@x.com".into(),
            via: MatchedBy::Mail,
        }
    }

    #[test]
    fn one_round_at_a_time_and_what_waits_goes_with_the_next() {
        let dir = parse_users("1001,a@x.com\n1002,b@x.com\n", Path::new("/u.csv")).unwrap();
        let mut m = Matching::new(Matches::default(), 0);
        let first = m.next_round(&dir, 0, Duration::from_secs(3600)).unwrap();
        assert_eq!(strs(&first.emails), ["a@x.com", "b@x.com"]);
        m.want(["c@x.com".into()]);
        assert!(
            m.next_round(&dir, 1, Duration::from_secs(3600)).is_none(),
            "one round runs"
        );
        let changed = m.on_chunk(first.generation, vec![("a@x.com".into(), matched("id-a"))]);
        assert_eq!(changed, 1);
        let end = m.on_done(first.generation, &Ok(()), 2);
        assert!(end.changed == [Arc::from("a@x.com")] && end.retry.is_none() && m.matched_once);
        assert!(end.full, "the first round is a full one");
        let next = m.next_round(&dir, 3, Duration::from_secs(3600)).unwrap();
        assert_eq!(strs(&next.emails), ["c@x.com"]);
    }

    #[test]
    fn answers_of_an_older_generation_are_dropped() {
        let dir = parse_users("1001,a@x.com\n", Path::new("/u.csv")).unwrap();
        let mut m = Matching::new(Matches::default(), 0);
        let old = m.next_round(&dir, 0, Duration::from_secs(3600)).unwrap();
        m.restart(&dir);
        assert!(m.on_chunk(old.generation, vec![("a@x.com".into(), matched("old"))]) == 0);
        let end = m.on_done(old.generation, &Ok(()), 1);
        assert!(end.changed.is_empty() && !m.matched_once && !end.full);
        let new = m.next_round(&dir, 2, Duration::from_secs(3600)).unwrap();
        assert_eq!((new.generation, new.emails.len()), (old.generation + 1, 1));
    }

    #[test]
    fn an_unchecked_answer_keeps_the_old_match_and_a_failure_retries_sooner() {
        let dir = parse_users("1001,a@x.com\n", Path::new("/u.csv")).unwrap();
        let mut m = Matching::new(Matches::default(), 0);
        let r = m.next_round(&dir, 0, Duration::from_secs(3600)).unwrap();
        m.on_chunk(r.generation, vec![("a@x.com".into(), matched("id-a"))]);
        m.on_done(r.generation, &Ok(()), 0);
        let r = m
            .next_round(&dir, 3_600_000, Duration::from_secs(3600))
            .unwrap();
        assert!(m.on_chunk(r.generation, vec![("a@x.com".into(), UserMatch::Unchecked)]) == 0);
        let end = m.on_done(
            r.generation,
            &Err(GraphError::InvalidSettings("x".into())),
            3_600_000,
        );
        assert!(!end.full, "a failed round is not recorded");
        let wait = end.retry.unwrap();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(300));
        assert_eq!(
            m.matches.get("a@x.com").unwrap().teams_id.as_deref(),
            Some("id-a")
        );
    }

    #[test]
    fn a_warm_start_looks_up_only_new_addresses_until_the_interval_has_passed() {
        let hour = Duration::from_secs(3600);
        let dir = parse_users("1001,a@x.com\n1002,b@x.com\n", Path::new("/u.csv")).unwrap();
        let cached = Matches::from_pairs(vec![(
            "a@x.com".to_owned(),
            MatchInfo::from_graph(&matched("id-a")),
        )]);
        // Looked up 10 minutes before this start: the next full round in 50 minutes.
        let now = 10 * 3_600_000;
        let due = first_full_round(true, Some(now - 600_000), now, hour);
        assert_eq!(due, now + 3_000_000);
        let mut m = Matching::new(cached, due);
        m.want_unresolved(&dir);
        let r = m.next_round(&dir, now, hour).unwrap();
        assert_eq!(
            strs(&r.emails),
            ["b@x.com"],
            "only the address without a match"
        );
        assert!(!m.on_done(r.generation, &Ok(()), now).full);
        assert!(m.next_round(&dir, due - 1, hour).is_none());
        let r = m.next_round(&dir, due, hour).unwrap();
        assert_eq!(r.emails.len(), 2, "then every address");
        assert!(m.on_done(r.generation, &Ok(()), due).full);
        // At once: nothing cached, no record (another tenant), a clock that went back, or
        // a record older than the interval.
        assert_eq!(first_full_round(false, Some(now - 1), now, hour), now);
        assert_eq!(first_full_round(true, None, now, hour), now);
        assert_eq!(first_full_round(true, Some(now + 1), now, hour), now);
        assert_eq!(
            first_full_round(true, Some(now - 7_200_000), now, hour),
            now
        );
    }

    #[test]
    fn a_round_larger_than_a_merge_batch_keeps_every_answer_and_change() {
        let n = MERGE_EVERY + 5_000;
        let users: String = (0..n).map(|i| format!("{i},u{i}@x.com\n")).collect();
        let dir = parse_users(&users, Path::new("/u.csv")).unwrap();
        let mut m = Matching::new(Matches::default(), 0);
        let round = m.next_round(&dir, 0, Duration::from_secs(3600)).unwrap();
        let mut total = 0;
        for chunk in round.emails.chunks(1500) {
            let answers = chunk
                .iter()
                .map(|e| (e.to_string(), matched(&format!("id-{e}"))))
                .collect();
            total += m.on_chunk(round.generation, answers);
        }
        let end = m.on_done(round.generation, &Ok(()), 1);
        assert_eq!((total, end.changed.len()), (n, n));
        let last = format!("u{}@x.com", n - 1);
        assert_eq!(
            m.matches.get(&last).unwrap().teams_id.as_deref(),
            Some(format!("id-{last}").as_str())
        );
        assert!(end.changed.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
}

//! Refused input, counted per cause and said at most once a minute per cause: the first
//! refusal after a quiet minute is logged at once (with a short, escaped sample of what was
//! sent), the ones after it are counted and summed up in one line ("refused 4,812
//! notifications with a wrong clientState in the last 61 s") once the minute is over. A
//! flood of refused input costs a few lines a minute, however large, and no attacker string
//! reaches the log longer than [`LOG_PREFIX`] characters.
//!
//! [`Tally`] is the pure part (time is a parameter); [`Refusals`] wraps it for the listeners,
//! reads [`crate::clock::monotonic`] and writes the lines.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one WARN per cause in this period.
pub const PERIOD: Duration = Duration::from_secs(60);
/// At most this many characters of a string from outside go into a log line.
pub const LOG_PREFIX: usize = 32;

/// One reason for refusing input: its counter name and how a log line says it.
#[derive(Debug, PartialEq, Eq)]
pub struct Cause {
    /// The counter's name, e.g. `wrong_client_state`.
    pub key: &'static str,
    /// What was done: "refused", "closed" ...
    pub verb: &'static str,
    /// One thing it was done to: "a notification with a wrong clientState".
    pub one: &'static str,
    /// Several: "notifications with a wrong clientState".
    pub many: &'static str,
}

/// A line to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// The first refusal of its cause after a quiet period, with its sample.
    First {
        cause: &'static Cause,
        detail: String,
    },
    /// `count` refusals over the last `over`; `detail` is the first one's sample.
    Summary {
        cause: &'static Cause,
        count: u64,
        over: Duration,
        detail: String,
    },
}

#[derive(Debug)]
struct Count {
    cause: &'static Cause,
    total: u64,
    /// Refused since the last line, not yet said.
    pending: u64,
    last_line: Instant,
    /// The first pending one's sample.
    first: String,
}

/// The pure counting: refusals and the time in, lines to log out.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Vec<Count>,
}

impl Tally {
    /// One refusal at `now`; `detail` is asked for only when it would be logged or kept.
    pub fn record(
        &mut self,
        cause: &'static Cause,
        now: Instant,
        detail: impl FnOnce() -> String,
    ) -> Option<Report> {
        let Some(count) = self.counts.iter_mut().find(|c| c.cause == cause) else {
            self.counts.push(Count {
                cause,
                total: 1,
                pending: 0,
                last_line: now,
                first: String::new(),
            });
            return Some(Report::First {
                cause,
                detail: detail(),
            });
        };
        count.total += 1;
        if count.pending == 0 {
            count.first = detail();
        }
        count.pending += 1;
        if now.saturating_duration_since(count.last_line) < PERIOD {
            return None;
        }
        Some(count.say(now))
    }

    /// The summaries whose period is over (call this now and then, e.g. every 10 s).
    pub fn due(&mut self, now: Instant) -> Vec<Report> {
        self.counts
            .iter_mut()
            .filter(|c| c.pending > 0 && now.saturating_duration_since(c.last_line) >= PERIOD)
            .map(|c| c.say(now))
            .collect()
    }

    /// Every count not said yet, period over or not (when the listener stops).
    pub fn drain(&mut self, now: Instant) -> Vec<Report> {
        self.counts
            .iter_mut()
            .filter(|c| c.pending > 0)
            .map(|c| c.say(now))
            .collect()
    }

    /// Each cause's refusals since the start.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        self.counts.iter().map(|c| (c.cause.key, c.total)).collect()
    }
}

impl Count {
    /// The line for what is pending; a single one after a quiet period reads as a first one.
    fn say(&mut self, now: Instant) -> Report {
        let over = now.saturating_duration_since(self.last_line);
        let (count, detail) = (self.pending, std::mem::take(&mut self.first));
        self.pending = 0;
        self.last_line = now;
        if count == 1 && over >= PERIOD {
            Report::First {
                cause: self.cause,
                detail,
            }
        } else {
            Report::Summary {
                cause: self.cause,
                count,
                over,
                detail,
            }
        }
    }
}

/// A listener's refusals: cheap to clone, shared by its handlers and its accept loop.
#[derive(Debug, Clone)]
pub struct Refusals {
    listener: &'static str,
    tally: Arc<Mutex<Tally>>,
}

impl Refusals {
    pub fn new(listener: &'static str) -> Refusals {
        Refusals {
            listener,
            tally: Arc::default(),
        }
    }

    /// Count one refusal; logged now if it is the first of its cause in a period, or the
    /// period's summary is due. `detail` names what was refused: pass strings from outside
    /// through [`truncate_for_log`].
    pub fn refused(&self, cause: &'static Cause, detail: impl FnOnce() -> String) {
        let report = self.lock().record(cause, crate::clock::monotonic(), detail);
        if let Some(report) = report {
            self.log(&report);
        }
    }

    /// Log the summaries that are due.
    pub fn flush(&self) {
        let reports = self.lock().due(crate::clock::monotonic());
        reports.iter().for_each(|r| self.log(r));
    }

    /// Log every count not said yet (the listener stops).
    pub fn drain(&self) {
        let reports = self.lock().drain(crate::clock::monotonic());
        reports.iter().for_each(|r| self.log(r));
    }

    /// Each cause's refusals since the start.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        self.lock().totals()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panic while counting leaves counts that are still counts.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, report: &Report) {
        let listener = self.listener;
        match report {
            Report::First { cause, detail } => tracing::warn!(
                listener,
                cause = cause.key,
                detail = %detail,
                "{} {}; more of these are counted and said once a minute",
                cause.verb,
                cause.one
            ),
            Report::Summary {
                cause,
                count,
                over,
                detail,
            } => tracing::warn!(
                listener,
                cause = cause.key,
                first = %detail,
                "{} {} {} in the last {} s",
                cause.verb,
                grouped(*count),
                if *count == 1 { cause.one } else { cause.many },
                over.as_secs()
            ),
        }
    }
}

/// A string from outside as it may go into a log line: its first [`LOG_PREFIX`] characters,
/// control characters escaped (no forged lines), and its length in bytes when it was longer.
pub fn truncate_for_log(s: &str) -> String {
    let (prefix, cut) = match s.char_indices().nth(LOG_PREFIX) {
        None => (s, false),
        Some((at, _)) => (&s[..at], true),
    };
    let mut out = String::with_capacity(prefix.len() + 16);
    for c in prefix.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
}

/// 4812 -> "4,812".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static WRONG: Cause = Cause {
        key: "wrong_client_state",
        verb: "refused",
        one: "a notification with a wrong clientState",
        many: "notifications with a wrong clientState",
    };
    static UNKNOWN: Cause = Cause {
        key: "unknown_subscription",
        verb: "refused",
        one: "a notification for an unknown subscription",
        many: "notifications for unknown subscriptions",
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_first_refusal_is_said_at_once_and_the_rest_once_a_minute() {
        let t0 = crate::clock::monotonic();
        let mut tally = Tally::default();
        let first = tally.record(&WRONG, t0, || "sub-1".into());
        assert_eq!(
            first,
            Some(Report::First {
                cause: &WRONG,
                detail: "sub-1".into()
            })
        );
        for i in 0..4_812u64 {
            let at = t0 + Duration::from_millis(i * 10);
            assert_eq!(tally.record(&WRONG, at, || format!("n{i}")), None);
        }
        assert!(
            tally.due(t0 + secs(59)).is_empty(),
            "the minute is not over"
        );
        assert_eq!(
            tally.due(t0 + secs(61)),
            vec![Report::Summary {
                cause: &WRONG,
                count: 4_812,
                over: secs(61),
                detail: "n0".into()
            }]
        );
        assert!(tally.due(t0 + secs(200)).is_empty(), "said once");
        assert_eq!(tally.totals(), vec![("wrong_client_state", 4_813)]);
    }

    #[test]
    fn causes_are_counted_apart() {
        let t0 = crate::clock::monotonic();
        let mut tally = Tally::default();
        assert!(tally.record(&WRONG, t0, String::new).is_some());
        assert!(tally.record(&UNKNOWN, t0, String::new).is_some());
        assert!(tally.record(&WRONG, t0, String::new).is_none());
        assert!(tally.record(&UNKNOWN, t0, String::new).is_none());
        assert!(tally.record(&UNKNOWN, t0, String::new).is_none());
        let due = tally.due(t0 + PERIOD);
        let counts: Vec<_> = due
            .iter()
            .map(|r| match r {
                Report::Summary { cause, count, .. } => (cause.key, *count),
                Report::First { cause, .. } => (cause.key, 1),
            })
            .collect();
        assert_eq!(
            counts,
            vec![("wrong_client_state", 1), ("unknown_subscription", 2)]
        );
    }

    #[test]
    fn a_refusal_after_a_quiet_minute_is_said_at_once() {
        let t0 = crate::clock::monotonic();
        let mut tally = Tally::default();
        assert!(tally.record(&WRONG, t0, String::new).is_some());
        let later = tally.record(&WRONG, t0 + secs(90), || "again".into());
        assert_eq!(
            later,
            Some(Report::First {
                cause: &WRONG,
                detail: "again".into()
            })
        );
        // A steady trickle: one line a minute, each summing up its minute.
        let mut lines = 0;
        for s in 91..=300 {
            lines += usize::from(tally.record(&WRONG, t0 + secs(s), String::new).is_some());
        }
        assert_eq!(lines, 3, "at 150, 210 and 270 s");
    }

    #[test]
    fn drain_says_what_is_pending_at_the_end() {
        let t0 = crate::clock::monotonic();
        let mut tally = Tally::default();
        tally.record(&WRONG, t0, String::new);
        tally.record(&WRONG, t0 + secs(1), || "x".into());
        tally.record(&WRONG, t0 + secs(2), || "y".into());
        assert_eq!(
            tally.drain(t0 + secs(3)),
            vec![Report::Summary {
                cause: &WRONG,
                count: 2,
                over: secs(3),
                detail: "x".into()
            }]
        );
        assert!(tally.drain(t0 + secs(4)).is_empty());
    }

    #[test]
    fn strings_from_outside_are_cut_and_escaped() {
        assert_eq!(truncate_for_log("sub-1"), "sub-1");
        assert_eq!(truncate_for_log("a\nb\"c\u{1b}"), "a\\nb\"c\\u{1b}");
        let long = "é".repeat(10_000);
        let cut = truncate_for_log(&long);
        assert!(cut.starts_with(&"é".repeat(LOG_PREFIX)), "{cut}");
        assert!(cut.ends_with("… (20000 bytes)"), "{cut}");
        assert!(cut.chars().count() < LOG_PREFIX + 20, "{cut}");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(4_812), "4,812");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}

//! How often to poll Teams presence: the pure pacing core (`sync.poll_interval`). Counts and
//! `now` in, a plan out; no I/O, no clock reads.
//!
//! With `poll_interval = "auto"` a cycle of `requests` getPresencesByUserId calls lasts as
//! long as the share of the Graph budget left for polling allows:
//!
//! ```text
//! allowance = budget * share * factor - other presence requests in the last window
//! interval  = max(min_interval, window * requests / allowance)
//! ```
//!
//! Writes spend the same budget (Graph counts presence requests per app and tenant:
//! <https://learn.microsoft.com/en-us/graph/throttling-limits>), and lookups and subscription
//! calls are counted with them (a conservative reading), so what they used in the last window is
//! taken off. `factor` is the AIMD answer to throttling: halved by every observation that
//! brings new 429s (the poller observes before each request, so in effect by each 429), down
//! to [`MIN_FACTOR`], then raised by [`RECOVERY`] per window without one, up to 1. The
//! allowance never drops below [`FLOOR`] of the share: polling slows down under a burst of
//! writes, it does not stop.
//!
//! A fixed `poll_interval` is used as it is. Either way the cycle's requests are spread over
//! its interval ([`Plan::spacing`]), so that the Teams -> PBX delay is even across users.

use std::collections::VecDeque;
use std::time::Duration;

use super::types::{Millis, millis};

/// How much `factor` grows per window without a 429 (additive increase).
pub const RECOVERY: f64 = 0.1;
/// The lowest `factor` (after many 429s in a row): 1/64 of the share.
pub const MIN_FACTOR: f64 = 1.0 / 64.0;
/// The least of the polling share polling keeps while other requests use the rest.
pub const FLOOR: f64 = 0.1;

/// `sync.poll_interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PollInterval {
    /// As often as the budget share allows.
    Auto,
    /// A fixed interval.
    Every(Duration),
}

/// The keys of `[sync]` the pacing reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceSettings {
    pub interval: PollInterval,
    /// `sync.graph_budget`: presence requests Graph allows per `window`.
    pub budget: u32,
    /// `sync.graph_budget_window`.
    pub window: Duration,
    /// `sync.poll_budget_share`: the part of the budget polling may use (0 < share <= 1).
    pub share: f64,
    /// `sync.poll_min_interval`: never faster than this.
    pub min_interval: Duration,
}

/// One cycle's plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// From the start of this cycle to the start of the next.
    pub interval: Duration,
    /// Between two requests, this cycle's last and the next one's first included
    /// (`interval / requests`; the interval itself for one request or none).
    pub spacing: Duration,
    /// The interval changed by more than 2x since it was last said (INFO line).
    pub say: bool,
}

/// The pacing state: throttling factor, what other requests used, what was last said.
#[derive(Debug, Clone)]
pub struct Pacer {
    settings: PaceSettings,
    factor: f64,
    /// Since when `factor` last changed (recovery counts whole windows from here).
    stepped: Millis,
    /// Other presence requests, by when they were counted; only the last window is kept.
    others: VecDeque<(Millis, u64)>,
    /// The interval last said.
    said: Option<Duration>,
    last: Option<Plan>,
}

impl Pacer {
    pub fn new(settings: PaceSettings, now: Millis) -> Pacer {
        Pacer {
            settings,
            factor: 1.0,
            stepped: now,
            others: VecDeque::new(),
            said: None,
            last: None,
        }
    }

    pub fn settings(&self) -> &PaceSettings {
        &self.settings
    }

    /// What happened since the last call: presence requests other than the poll's, and
    /// answers 429 (to any of them, the poll's included).
    pub fn observe(&mut self, others: u64, throttled: u64, now: Millis) {
        if others > 0 {
            self.others.push_back((now, others));
        }
        let window = millis(self.settings.window).max(1);
        if throttled > 0 {
            self.factor = (self.factor / 2.0).max(MIN_FACTOR);
            self.stepped = now;
        } else if self.factor < 1.0 {
            let windows = (now - self.stepped) / window;
            if windows > 0 {
                self.factor = (self.factor + RECOVERY * windows as f64).min(1.0);
                self.stepped += windows * window;
            }
        } else {
            self.stepped = now;
        }
        while self.others.front().is_some_and(|(t, _)| now - t >= window) {
            self.others.pop_front();
        }
    }

    /// The plan of a cycle of `requests` requests starting `now`.
    pub fn plan(&mut self, requests: usize, now: Millis) -> Plan {
        let interval = match self.settings.interval {
            PollInterval::Every(d) => d,
            PollInterval::Auto => self.auto(requests, now),
        };
        let spacing = interval / u32::try_from(requests.max(1)).unwrap_or(u32::MAX);
        let say = self.settings.interval == PollInterval::Auto
            && self.said.is_none_or(|s| {
                interval.as_secs_f64() > 2.0 * s.as_secs_f64()
                    || 2.0 * interval.as_secs_f64() < s.as_secs_f64()
            });
        if say {
            self.said = Some(interval);
        }
        let plan = Plan {
            interval,
            spacing,
            say,
        };
        self.last = Some(plan);
        plan
    }

    fn auto(&self, requests: usize, now: Millis) -> Duration {
        let min = self.settings.min_interval;
        if requests == 0 {
            return min;
        }
        let allowance = self.allowance(now);
        let secs = self.settings.window.as_secs_f64() * requests as f64 / allowance;
        Duration::try_from_secs_f64(secs).map_or(Duration::MAX, |d| d.max(min))
    }

    /// Poll requests allowed per window now.
    pub fn allowance(&self, now: Millis) -> f64 {
        let share = f64::from(self.settings.budget) * self.settings.share * self.factor;
        let window = millis(self.settings.window).max(1);
        let others: u64 = self
            .others
            .iter()
            .filter(|(t, _)| now - t < window)
            .map(|(_, n)| n)
            .sum();
        (share - others as f64)
            .max(share * FLOOR)
            .max(f64::MIN_POSITIVE)
    }

    /// The throttling factor (1: no 429 lately).
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The last plan.
    pub fn last(&self) -> Option<Plan> {
        self.last
    }
}

#[cfg(test)]
#[path = "pacing_tests.rs"]
mod tests;

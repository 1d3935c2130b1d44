//! PURE: the leader lease as one node sees it. The database's answers and `now` (monotonic)
//! go in, commands come out; nothing here reads a clock or waits for the network, so the
//! tests drive it with plain calls and made-up instants.
//!
//! The lease is a row in PostgreSQL (holder, epoch, expiry on the database's clock). A
//! standby asks to acquire it every `retry`; the database grants it only once it has expired
//! (or is already ours), and every grant to a standby starts a new term: epoch + 1. The leader
//! renews it every `renew`, for its epoch only.
//!
//! Fencing on this side: the leader may act only until `sent + lease - margin`, where `sent` is
//! when it sent its last successful renewal. The database's expiry is later than that (it
//! counts from when the statement ran, after `sent`), so by the time another node can acquire
//! the lease this node has stopped acting for `margin` already, even if it was frozen
//! (SIGSTOP, a long GC-like pause, a partition) and never heard an answer.

use std::time::Duration;

use tokio::time::Instant;

/// The lease's timings (`[ha] lease`; the others follow from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a grant or renewal lasts on the database's clock.
    pub lease: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a standby asks for the lease.
    pub retry: Duration,
    /// How much earlier than the database's expiry the leader stops acting.
    pub margin: Duration,
}

impl LeaseSettings {
    /// The defaults for a lease: renew every fifth of it, stop a fifth early, a standby asks
    /// every tenth of it (at least every 100 ms).
    pub fn for_lease(lease: Duration) -> LeaseSettings {
        LeaseSettings {
            lease,
            renew: lease / 5,
            retry: (lease / 10).max(Duration::from_millis(100)),
            margin: lease / 5,
        }
    }
}

/// What this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader { epoch: i64 },
}

/// The lease as the database showed it, held by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    pub epoch: i64,
    /// Until the lease expires, on the database's clock (zero when it has).
    pub expires_in: Duration,
}

/// Who held the lease before this node took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub node: String,
    pub epoch: i64,
    /// How long before the grant the previous lease had expired (zero when it was released).
    pub expired_for: Duration,
    /// The previous holder gave it up (a planned stop) rather than letting it run out.
    pub released: bool,
}

/// The database's answer to an [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This node holds the lease for `epoch`; `previous` is set on a new grant.
    Held {
        epoch: i64,
        previous: Option<Previous>,
    },
    /// Another node holds it (or, for a renewal, our term is over).
    Taken(Holder),
    /// The database could not be asked (connection lost, timeout): the text says why.
    Failed(String),
}

/// A question for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Take the lease if it is free, expired or ours, starting a new term.
    Acquire,
    /// Extend our term `epoch`.
    Renew { epoch: i64 },
}

/// Why a leader stops leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The database shows another holder (or another term).
    Taken(Holder),
    /// No renewal was confirmed in time: the lease may have run out.
    Unconfirmed { last_error: Option<String> },
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this question to the database; answer with [`Elector::answered`] and its `sent`.
    Ask(Ask),
    /// This node leads from now on, for `epoch`.
    Lead {
        epoch: i64,
        previous: Option<Previous>,
    },
    /// Stop everything a leader does, at once.
    StepDown { epoch: i64, why: Why },
}

/// One node's view of the lease.
#[derive(Debug)]
pub struct Elector {
    settings: LeaseSettings,
    role: Role,
    /// While leading: until when this node may act (its fence).
    valid_until: Option<Instant>,
    /// When to ask next.
    next_ask: Instant,
    /// The question on its way, and when it was sent.
    in_flight: Option<(Ask, Instant)>,
    /// The holder the last answer showed (standby), for `status`.
    seen: Option<Holder>,
    last_error: Option<String>,
}

impl Elector {
    /// A standby that asks at once.
    pub fn new(settings: LeaseSettings, now: Instant) -> Elector {
        Elector {
            settings,
            role: Role::Standby,
            valid_until: None,
            next_ask: now,
            in_flight: None,
            seen: None,
            last_error: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Until when the leader may act; `None` on a standby.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// The other node that holds the lease, as last seen.
    pub fn seen(&self) -> Option<&Holder> {
        self.seen.as_ref()
    }

    /// When [`Elector::tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        let ask = match self.in_flight {
            // A question unanswered for a whole lease is given up on.
            Some((_, sent)) => sent + self.settings.lease,
            None => self.next_ask,
        };
        self.valid_until.map_or(ask, |until| until.min(ask))
    }

    /// Time passes: step down when the fence runs out, ask when a question is due.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let mut commands = Vec::new();
        if let Role::Leader { epoch } = self.role
            && self.valid_until.is_some_and(|until| now >= until)
        {
            let last_error = self.last_error.clone();
            commands.push(self.step_down(epoch, Why::Unconfirmed { last_error }));
        }
        if let Some((_, sent)) = self.in_flight
            && now >= sent + self.settings.lease
        {
            self.in_flight = None;
        }
        if self.in_flight.is_none() && now >= self.next_ask {
            let ask = match self.role {
                Role::Leader { epoch } => Ask::Renew { epoch },
                Role::Standby => Ask::Acquire,
            };
            self.in_flight = Some((ask, now));
            commands.push(Command::Ask(ask));
        }
        commands
    }

    /// The answer to the question sent at `sent`.
    pub fn answered(&mut self, sent: Instant, answer: Answer, now: Instant) -> Vec<Command> {
        let Some((ask, _)) = self.in_flight.take_if(|(_, at)| *at == sent) else {
            return Vec::new(); // an answer to a question given up on
        };
        match answer {
            Answer::Held { epoch, previous } => self.held(ask, sent, epoch, previous, now),
            Answer::Taken(holder) => self.taken(holder, now),
            Answer::Failed(error) => {
                self.last_error = Some(error);
                // A leader retries soon (its fence is running); a standby at its pace.
                let again = match self.role {
                    Role::Leader { .. } => self.settings.renew / 4,
                    Role::Standby => self.settings.retry,
                };
                self.next_ask = now + again;
                Vec::new()
            }
        }
    }

    fn held(
        &mut self,
        ask: Ask,
        sent: Instant,
        epoch: i64,
        previous: Option<Previous>,
        now: Instant,
    ) -> Vec<Command> {
        self.last_error = None;
        self.seen = None;
        self.next_ask = now + self.settings.renew;
        let until = sent + self.settings.lease.saturating_sub(self.settings.margin);
        match (self.role, ask) {
            (Role::Leader { epoch: ours }, Ask::Renew { .. }) if ours == epoch => {
                self.valid_until = Some(until);
                Vec::new()
            }
            // A renewal confirmed after this node stepped down: the term is over here; the next
            // question starts a new one.
            (Role::Standby, Ask::Renew { .. }) => {
                self.next_ask = now;
                Vec::new()
            }
            _ if now >= until => {
                // Granted, but too late to act on it safely: ask again at once.
                self.next_ask = now;
                Vec::new()
            }
            (Role::Standby, Ask::Acquire) => {
                self.role = Role::Leader { epoch };
                self.valid_until = Some(until);
                vec![Command::Lead { epoch, previous }]
            }
            (Role::Leader { epoch: ours }, _) => {
                // Another term than ours: ours is over.
                let holder = Holder {
                    node: String::new(),
                    epoch,
                    expires_in: Duration::ZERO,
                };
                vec![self.step_down(ours, Why::Taken(holder))]
            }
        }
    }

    fn taken(&mut self, holder: Holder, now: Instant) -> Vec<Command> {
        self.last_error = None;
        self.next_ask = now + self.settings.retry;
        self.seen = Some(holder.clone());
        match self.role {
            Role::Leader { epoch } => vec![self.step_down(epoch, Why::Taken(holder))],
            Role::Standby => Vec::new(),
        }
    }

    fn step_down(&mut self, epoch: i64, why: Why) -> Command {
        self.role = Role::Standby;
        self.valid_until = None;
        Command::StepDown { epoch, why }
    }
}

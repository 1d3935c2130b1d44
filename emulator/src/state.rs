//! All emulator state behind one mutex (never held across an await): apps, tokens, the
//! directory, presence, the request log, injected faults, rate-limit windows and the clock.
//!
//! Sources: the presence rate limit on
//! <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid> and
//! <https://learn.microsoft.com/en-us/graph/api/presence-get>; tokens on the client-credentials
//! page <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use std::time::{Duration, Instant, SystemTime};

use crate::assertion::KeyCredential;
use crate::delegated::{DeviceCode, RefreshGrant};
use crate::directory::Directory;
use crate::groups::Groups;
use crate::model::{Delivery, EmulatorOptions, Fault, FaultKind, LoggedRequest};
use crate::presence::PresenceState;
use crate::subscriptions::Subscription;
use crate::trust::{SigningKeys, TrustState};
use crate::util::random_string;

/// Length of a presence rate-limit window (presence pages above).
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// A registered app (service principal with its application permissions).
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub secret: String,
    /// Certificates registered for the app (key credentials); client assertions are checked
    /// with them (`assertion.rs`).
    pub certificates: Vec<KeyCredential>,
    /// Granted application roles; empty = no admin consent (client-credentials page above).
    pub roles: HashSet<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub client_id: String,
    pub expires_at: Instant,
    /// Delegated tokens: the signed-in user's object id. None for app-only tokens.
    pub user: Option<String>,
    /// Delegated tokens: granted Graph scopes (short names, e.g. `Presence.Read.All`).
    pub scopes: Vec<String>,
}

/// Who called Graph: the app, and for delegated tokens the user and scopes.
pub(crate) type Caller = TokenInfo;

/// Why a bearer token was refused.
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    left: u32,
    /// Percent of matching requests that get the fault (100: every one), spread evenly.
    share: u32,
    /// Matching requests seen so far.
    seen: u32,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// What the emulator knows; see the module doc.
#[derive(Debug)]
pub(crate) struct State {
    pub opts: EmulatorOptions,
    pub tenant_id: String,
    /// Domain names accepted in place of the tenant id on the token endpoint (client-credentials
    /// page above).
    pub domains: Vec<String>,
    /// The emulator's own base URL: it stands in for https://graph.microsoft.com, so
    /// `{base_url}/.default` is accepted as the Graph scope (clients point `graph_url` at us).
    pub self_url: String,
    /// Apps by lowercase client id.
    pub apps: HashMap<String, App>,
    pub tokens: HashMap<String, TokenInfo>,
    pub directory: Directory,
    /// Groups and their direct members (`groups.rs`).
    pub groups: Groups,
    /// Presence by canonical user id.
    pub presence: HashMap<String, PresenceState>,
    pub log: VecDeque<LoggedRequest>,
    /// Device codes by `device_code`.
    pub device_codes: HashMap<String, DeviceCode>,
    /// Refresh tokens (all ever issued and not forgotten: Entra does not revoke a used one).
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    /// Per user: bumped by `revoke_refresh_tokens` (Entra's refreshTokensValidFromDateTime).
    pub token_generation: HashMap<String, u64>,
    /// Subscriptions by id.
    pub subscriptions: HashMap<String, Subscription>,
    /// `jti`s of accepted client assertions, until they expire (only with
    /// `reject_reused_assertions`).
    pub used_assertions: HashMap<String, SystemTime>,
    /// Notification POST attempts (oldest first), capped like the request log.
    pub deliveries: VecDeque<Delivery>,
    /// Notification POST attempts still to fail on purpose (`fail_deliveries`).
    pub fail_deliveries: u32,
    /// The signing-key rollover and the last rich bodies (`trust.rs`).
    pub trust: TrustState,
    faults: Vec<ActiveFault>,
    rate: HashMap<String, Window>,
    offset: Duration,
    seq: u64,
}

/// State plus what never changes after start.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub base_url: String,
    /// Client for validation handshakes and notification POSTs (no proxy).
    pub http: reqwest::Client,
    /// The keys that sign rich notifications' validation tokens (`trust.rs`).
    pub signing: SigningKeys,
    /// This value itself, for tasks that must not keep the emulator alive.
    pub me: std::sync::Weak<Shared>,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panicked handler) still yields the data.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    pub fn new(opts: EmulatorOptions, tenant_id: String) -> Self {
        Self {
            opts,
            tenant_id,
            domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
            self_url: String::new(),
            apps: HashMap::new(),
            tokens: HashMap::new(),
            directory: Directory::default(),
            groups: Groups::default(),
            presence: HashMap::new(),
            log: VecDeque::new(),
            device_codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            token_generation: HashMap::new(),
            subscriptions: HashMap::new(),
            used_assertions: HashMap::new(),
            deliveries: VecDeque::new(),
            fail_deliveries: 0,
            trust: TrustState::default(),
            faults: Vec::new(),
            rate: HashMap::new(),
            offset: Duration::ZERO,
            seq: 0,
        }
    }

    /// Emulator time: real monotonic time plus whatever `advance_clock` added.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    /// Emulator wall-clock time (dates in bodies).
    pub fn wall(&self) -> SystemTime {
        SystemTime::now() + self.offset
    }

    pub fn advance(&mut self, d: Duration) {
        self.offset += d;
    }

    /// Issues an opaque app-only access token (client-credentials page above;
    /// <https://learn.microsoft.com/en-us/entra/identity-platform/configurable-token-lifetimes>);
    /// returns it with its lifetime.
    pub fn issue_token(&mut self, client_id: &str) -> (String, Duration) {
        let token = format!("emu.{}", random_string(80));
        let lifetime = self.store_token(token.clone(), client_id, None, Vec::new());
        (token, lifetime)
    }

    /// Remembers `token` (app-only when `user` is None); returns its lifetime.
    pub fn store_token(
        &mut self,
        token: String,
        client_id: &str,
        user: Option<String>,
        scopes: Vec<String>,
    ) -> Duration {
        let now = self.now();
        // Forget tokens long expired so the map stays small in long benchmarks.
        self.tokens
            .retain(|_, t| t.expires_at + Duration::from_secs(3600) > now);
        let lifetime = self.opts.token_lifetime;
        self.tokens.insert(
            token,
            TokenInfo {
                client_id: client_id.to_owned(),
                expires_at: now + lifetime,
                user,
                scopes,
            },
        );
        lifetime
    }

    /// The client id a bearer token belongs to.
    pub fn check_token(&self, token: Option<&str>) -> Result<String, TokenProblem> {
        self.check_caller(token).map(|c| c.client_id)
    }

    /// The app (and delegated user and scopes) a bearer token belongs to.
    pub fn check_caller(&self, token: Option<&str>) -> Result<Caller, TokenProblem> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(TokenProblem::Missing)?;
        let info = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if info.expires_at <= self.now() {
            return Err(TokenProblem::Expired);
        }
        Ok(info.clone())
    }

    /// Records one notification POST attempt (capped like the request log).
    pub fn push_delivery(&mut self, d: Delivery) {
        let cap = self.opts.request_log_limit.max(256);
        while self.deliveries.len() >= cap {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(d);
    }

    pub fn expire_tokens(&mut self) {
        let now = self.now();
        for t in self.tokens.values_mut() {
            t.expires_at = t.expires_at.min(now);
        }
    }

    /// Whether the app holds any of `roles`.
    pub fn has_any_role(&self, client_id: &str, roles: &[&str]) -> bool {
        self.apps
            .get(&client_id.to_lowercase())
            .is_some_and(|a| roles.iter().any(|r| a.roles.contains(*r)))
    }

    pub fn add_fault(&mut self, fault: Fault) {
        self.add_fault_share(fault, 100);
    }

    /// Like [`State::add_fault`], for `share` percent of the matching requests (spread evenly:
    /// 30 means 3 of every 10), until `fault.times` of them got it.
    pub fn add_fault_share(&mut self, fault: Fault, share: u32) {
        let left = fault.times;
        self.faults.push(ActiveFault {
            fault,
            left,
            share: share.min(100),
            seen: 0,
        });
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Consumes one use of the first fault matching this request.
    pub fn take_fault(&mut self, method: &str, path: &str, op: &str) -> Option<FaultKind> {
        let pos = self.faults.iter().position(|f| {
            f.left > 0
                && f.fault
                    .method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && (path.contains(&f.fault.path_contains)
                    || op.eq_ignore_ascii_case(&f.fault.path_contains))
        })?;
        let f = &mut self.faults[pos];
        let before = u64::from(f.seen) * u64::from(f.share) / 100;
        f.seen = f.seen.saturating_add(1);
        if u64::from(f.seen) * u64::from(f.share) / 100 == before {
            return None;
        }
        f.left -= 1;
        let kind = f.fault.kind.clone();
        if f.left == 0 {
            self.faults.remove(pos);
        }
        Some(kind)
    }

    /// Counts one presence request of `client_id` in its 30 s window (presence pages above); Err
    /// carries the seconds until the window ends (Retry-After:
    /// <https://learn.microsoft.com/en-us/graph/throttling>). Fixed windows, not sliding; a
    /// getPresencesByUserId call counts once (UNVERIFIED; asked in
    /// <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/777>).
    pub fn rate_check(&mut self, client_id: &str) -> Result<(), u64> {
        let now = self.now();
        let limit = self.opts.presence_limit_per_30s;
        let w = self.rate.entry(client_id.to_lowercase()).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(w.start) >= RATE_WINDOW {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        if w.count >= limit {
            let left = RATE_WINDOW.saturating_sub(now.saturating_duration_since(w.start));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        w.count += 1;
        Ok(())
    }

    pub fn push_log(&mut self, entry: LoggedRequest) {
        if self.opts.request_log_limit == 0 {
            return;
        }
        while self.log.len() >= self.opts.request_log_limit {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// The presence state of a (canonical) user id, pruned to `now`, marked as changed.
    pub fn presence_mut(&mut self, id: &str) -> &mut PresenceState {
        self.seq += 1;
        let (seq, now) = (self.seq, self.now());
        let p = self.presence.entry(id.to_owned()).or_default();
        p.prune(now);
        p.seq = seq;
        p
    }
}

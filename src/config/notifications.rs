//! `[notifications]`: presence change notifications held by subscription accounts (Graph accepts
//! presence subscriptions only with a delegated token:
//! <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>), the webhook the
//! daemon serves, and how often polling still reconciles while they are healthy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::ConfigError;
use super::secret::credential_file;
use super::validate::Ctx;

/// Default `notifications.listen`: loopback, behind a reverse proxy that terminates TLS.
pub const DEFAULT_NOTIFY_LISTEN: &str = "127.0.0.1:8791";
/// Default `notifications.reconciliation_interval`.
pub const DEFAULT_RECONCILIATION_INTERVAL: &str = "5m";

/// systemd credentials of the webhook's own TLS (`LoadCredential=webhook-tls-cert:...`,
/// `webhook-tls-key`), used when the file names neither `tls_*_file` key.
pub const TLS_CERT_CREDENTIAL: &str = "webhook-tls-cert";
/// See [`TLS_CERT_CREDENTIAL`].
pub const TLS_KEY_CREDENTIAL: &str = "webhook-tls-key";

/// `[notifications]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NotificationsSection {
    pub enabled: bool,
    pub public_url: Option<String>,
    pub listen: String,
    pub accounts: Vec<String>,
    pub include_resource_data: bool,
    pub reconciliation_interval: String,
    pub delete_on_shutdown: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            enabled: false,
            public_url: None,
            listen: DEFAULT_NOTIFY_LISTEN.to_owned(),
            accounts: Vec::new(),
            include_resource_data: false,
            reconciliation_interval: DEFAULT_RECONCILIATION_INTERVAL.to_owned(),
            delete_on_shutdown: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The validated section; `Config::notifications` is `None` when it is not enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsConfig {
    /// What Graph posts to: HTTPS (plain HTTP only on a loopback host, for tests and demos).
    pub public_url: Url,
    /// Where the webhook listens.
    pub listen: SocketAddr,
    /// Subscription accounts (lowercased), in order: each holds one subscription of at most
    /// 650 users.
    pub accounts: Vec<String>,
    /// Rich notifications (encrypted resource data) instead of basic ones.
    pub include_resource_data: bool,
    /// Polling interval for users covered by a healthy subscription.
    pub reconciliation_interval: Duration,
    /// Delete the subscriptions when the daemon stops (default: keep them for the restart).
    pub delete_on_shutdown: bool,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl NotificationsConfig {
    /// Where lifecycle events (`reauthorizationRequired`) go: the same endpoint, marked.
    pub fn lifecycle_url(&self) -> Url {
        let mut url = self.public_url.clone();
        url.query_pairs_mut().append_pair("lifecycle", "1");
        url
    }
}

pub(super) fn notifications(
    ctx: &Ctx<'_>,
    n: &NotificationsSection,
) -> Result<Option<NotificationsConfig>, ConfigError> {
    if !n.enabled {
        return Ok(None);
    }
    let Some(public_url) = &n.public_url else {
        let reason = "must be set when notifications are enabled: the HTTPS URL Graph posts to";
        return Err(ctx.invalid("notifications.public_url", reason));
    };
    let public_url = ctx.url("notifications.public_url", public_url)?;
    let loopback = match public_url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if public_url.scheme() != "https" && !loopback {
        // Graph sends notifications only to an HTTPS URL:
        // https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks
        let reason = "must be https:// (Microsoft Graph sends notifications only to HTTPS URLs)";
        return Err(ctx.invalid("notifications.public_url", reason));
    }
    let listen: SocketAddr = n.listen.parse().map_err(|e| {
        let reason = format!(
            "{:?} is not an address:port like \"127.0.0.1:8791\" ({e})",
            n.listen
        );
        ctx.invalid("notifications.listen", reason)
    })?;
    let mut accounts: Vec<String> = Vec::new();
    for a in &n.accounts {
        let account = a.trim().to_lowercase();
        let (user, domain) = account.split_once('@').unwrap_or(("", ""));
        if user.is_empty() || !domain.contains('.') {
            let reason = format!("{a:?} is not an account like \"presence-sync-1@contoso.com\"");
            return Err(ctx.invalid("notifications.accounts", reason));
        }
        if accounts.contains(&account) {
            let reason = format!("{a:?} is listed twice (one subscription per account and app)");
            return Err(ctx.invalid("notifications.accounts", reason));
        }
        accounts.push(account);
    }
    if accounts.is_empty() {
        let reason = "lists no account: add at least one, e.g. [\"presence-sync-1@contoso.com\"]";
        return Err(ctx.invalid("notifications.accounts", reason));
    }
    let tls = match (&n.tls_cert_file, &n.tls_key_file) {
        (None, None) => tls_from_credentials(ctx)?,
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: ctx.path(cert),
            key: ctx.path(key),
        }),
        (Some(_), None) => {
            return Err(ctx.invalid(
                "notifications.tls_key_file",
                "must be set with tls_cert_file",
            ));
        }
        (None, Some(_)) => {
            return Err(ctx.invalid(
                "notifications.tls_cert_file",
                "must be set with tls_key_file",
            ));
        }
    };
    let minute = Duration::from_secs(60);
    Ok(Some(NotificationsConfig {
        public_url,
        listen,
        accounts,
        include_resource_data: n.include_resource_data,
        reconciliation_interval: ctx.duration(
            "notifications.reconciliation_interval",
            &n.reconciliation_interval,
            minute..=60 * minute,
        )?,
        delete_on_shutdown: n.delete_on_shutdown,
        tls,
    }))
}

/// The webhook's TLS from systemd credentials: both or neither.
fn tls_from_credentials(ctx: &Ctx<'_>) -> Result<Option<TlsFiles>, ConfigError> {
    let cert = credential_file(ctx.env, TLS_CERT_CREDENTIAL);
    let key = credential_file(ctx.env, TLS_KEY_CREDENTIAL);
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (Some(_), None) => Err(ctx.invalid(
            "notifications.tls_key_file",
            format!("the systemd credential \"{TLS_KEY_CREDENTIAL}\" is missing (\"{TLS_CERT_CREDENTIAL}\" needs it)"),
        )),
        (None, Some(_)) => Err(ctx.invalid(
            "notifications.tls_cert_file",
            format!("the systemd credential \"{TLS_CERT_CREDENTIAL}\" is missing (\"{TLS_KEY_CREDENTIAL}\" needs it)"),
        )),
    }
}

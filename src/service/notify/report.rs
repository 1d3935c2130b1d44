//! The planner's facts, said: one log line each (the messages `docs/notifications.md` lists),
//! and a `status` error where the admin must act or Graph refused.

use std::time::{Duration, UNIX_EPOCH};

use super::manager::Manager;
use crate::store::Write;
use crate::subscriptions::Fact;
use crate::sync::types::Millis;

impl Manager {
    pub(super) fn report(&mut self, fact: Fact) {
        let rest = self
            .report_account(fact)
            .and_then(|f| self.report_making(f));
        if let Some(fact) = rest {
            report_upkeep(fact);
        }
    }

    /// Facts about an account's sign-in; the others are given back.
    fn report_account(&mut self, fact: Fact) -> Option<Fact> {
        let path = &self.config_path;
        match fact {
            Fact::TokenFound { account } => {
                tracing::info!(%account, "subscription account {account}: token found");
            }
            Fact::NotSignedIn { account } => tracing::warn!(%account,
                "subscription account {account} not signed in; its share of users is polled. Sign it in: pbx-teams-presence login --config {path} --account {account}"),
            Fact::SignedOut { account, error } => {
                tracing::error!(%account, %error,
                    "subscription account {account} signed out ({error}); its users are polled. Sign it in again: pbx-teams-presence login --config {path} --account {account}");
                let message = format!(
                    "signed out ({error}); run: pbx-teams-presence login --account {account}"
                );
                self.record_error(account, message);
            }
            Fact::TokenNotRefreshed { account, error } => tracing::warn!(%account, %error,
                "subscription account {account}: token not refreshed ({error}); retrying later"),
            Fact::ListFailed { account, error } => tracing::warn!(%account, %error,
                "subscription account {account}: cannot list its subscriptions ({error}); retrying"),
            other => return Some(other),
        }
        None
    }

    /// Facts about making (or adopting) subscriptions; the others are given back.
    fn report_making(&mut self, fact: Fact) -> Option<Fact> {
        match fact {
            Fact::Kept {
                account,
                subscription: id,
                users,
            } => tracing::info!(%account,
                subscription = %id, users, "subscription account {account}: subscription {id} from the last run kept ({users} users)"),
            Fact::UnknownDeleted {
                account,
                subscription: id,
            } => tracing::info!(%account,
                subscription = %id, "subscription account {account}: unknown subscription {id} deleted"),
            Fact::ElsewhereDeleted {
                account,
                subscription: id,
                url,
            } => tracing::info!(%account, subscription = %id, url = %url,
                "subscription account {account}: subscription {id} notifies {url}, not notifications.public_url (another node's, or the URL before a change): deleted, a new one is made"),
            Fact::Created {
                account,
                subscription: id,
                users,
                expires_at,
            } => tracing::info!(%account,
                subscription = %id, users, expires = %date(expires_at),
                "subscription account {account}: subscription {id} created for {users} users, expires {}", date(expires_at)),
            Fact::CreateFailed {
                account,
                users,
                error,
                first,
            } => {
                // Said at the first failure in a row; every one is recorded.
                if first {
                    tracing::warn!(%account, %error, users,
                        "subscription account {account}: subscription for {users} users not created ({error}); they are polled; retrying with backoff");
                }
                self.record_error(account, format!("subscription not created: {error}"));
            }
            other => return Some(other),
        }
        None
    }

    /// For `status` (its errors list).
    fn record_error(&mut self, account: String, message: String) {
        self.out.write(Write::RecordError {
            component: "notifications".into(),
            user: Some(account),
            message,
            at: self.clock.now(),
        });
    }
}

/// A service-clock time as an RFC 3339 date, for the log.
fn date(at: Millis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Facts about keeping subscriptions alive and healthy.
fn report_upkeep(fact: Fact) {
    match fact {
        Fact::Renewed {
            account,
            subscription: id,
            expires_at,
        } => {
            tracing::debug!(%account, subscription = %id, expires = %date(expires_at),
                "subscription renewed");
        }
        Fact::Gone {
            account,
            subscription: id,
        } => tracing::warn!(%account, subscription = %id,
            "subscription account {account}: subscription {id} gone at Graph (expired or deleted); making a new one"),
        Fact::CheckFailed {
            account,
            subscription: id,
            error,
        } => tracing::warn!(%account, subscription = %id, %error,
            "subscription account {account}: look-up of subscription {id} failed ({error}); trying again at the next check"),
        Fact::RenewFailed {
            account,
            subscription: id,
            error,
        } => tracing::warn!(%account,
            subscription = %id, %error, "subscription account {account}: renewal of subscription {id} failed ({error}); retrying"),
        Fact::Lifecycle {
            account,
            subscription: id,
            event,
        } => {
            let account = account.as_deref().unwrap_or("-");
            tracing::info!(account, subscription = %id, %event,
                "subscription account {account}: lifecycle event {event} for subscription {id}");
        }
        Fact::Unhealthy {
            account,
            subscription: id,
            user,
        } => tracing::warn!(%account,
            subscription = %id, teams_user = %user,
            "subscription account {account}: a change of Teams user {user} that polling found was never notified by subscription {id}; it is made again and its users are polled meanwhile"),
        // Said by the functions above.
        Fact::TokenFound { .. }
        | Fact::NotSignedIn { .. }
        | Fact::SignedOut { .. }
        | Fact::TokenNotRefreshed { .. }
        | Fact::ListFailed { .. }
        | Fact::Kept { .. }
        | Fact::UnknownDeleted { .. }
        | Fact::ElsewhereDeleted { .. }
        | Fact::Created { .. }
        | Fact::CreateFailed { .. } => {}
    }
}

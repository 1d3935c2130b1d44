//! One account's subscription: keep it in line with the users it should cover (create,
//! renew, replace, drop), and adopt what an earlier run left.

use super::*;

impl Manager {
    /// Bring account `i`'s subscription in line with `ids`.
    pub(super) async fn settle(&mut self, i: usize, ids: shards::Shard) {
        let Some(mut token) = self.token(i).await else {
            return;
        };
        let graph = self.links.graph.borrow().clone();
        let rich = self.keys.is_some();
        let matches = self.accounts[i].sub.as_ref().is_some_and(|s| {
            s.healthy && s.rich == rich && s.expires > self.now() && same_ids(&s.ids, &ids)
        });
        if ids.is_empty() {
            self.drop_sub(i, true).await;
            return;
        }
        if !matches {
            self.drop_sub(i, true).await;
            self.create(i, &token, ids).await;
            return;
        }
        let due = self.accounts[i].sub.as_ref().is_some_and(|s| {
            s.reauth
                || s.expires
                    .duration_since(self.now())
                    .map_or(true, |left| left <= RENEW_BEFORE)
        });
        if !due {
            return;
        }
        let Some(id) = self.accounts[i].sub.as_ref().map(|s| s.id.clone()) else {
            return;
        };
        let expires = self.now() + LIFETIME;
        let mut answer = graph.renew_subscription(&token, &id, expires).await;
        if matches!(answer, Err(GraphError::Unauthorized { .. })) {
            let Some(fresh) = self.token_after_refusal(i).await else {
                return;
            };
            answer = graph.renew_subscription(&fresh, &id, expires).await;
            token = fresh;
        }
        match answer {
            Ok(_) => {
                let name = self.accounts[i].name.clone();
                if let Some(sub) = self.accounts[i].sub.as_mut() {
                    sub.expires = expires;
                    sub.reauth = false;
                    self.store
                        .write(Write::SaveSubscription(row(&name, sub)))
                        .await;
                }
                tracing::debug!(account = %self.accounts[i].name, subscription = %id, "subscription renewed");
                self.accounts[i].succeeded();
            }
            Err(GraphError::NotFound { .. }) => {
                tracing::warn!(account = %self.accounts[i].name, subscription = %id,
                    "subscription gone at renewal; making a new one");
                self.accounts[i].sub = None;
                self.store.write(Write::DropSubscription { id }).await;
                self.create(i, &token, ids).await;
            }
            Err(e) => {
                if matches!(e, GraphError::Unauthorized { .. }) {
                    self.accounts[i].drop_access();
                }
                tracing::warn!(account = %self.accounts[i].name, subscription = %id, error = %e,
                    "subscription renewal failed; retrying");
                self.accounts[i].failed(Instant::now());
            }
        }
    }

    /// First contact with an account's token: keep the subscriptions an earlier run recorded
    /// and Graph still has; delete the ones nobody recorded (no orphans, no 409 loops).
    pub(super) async fn adopt(&mut self, i: usize, token: &Bearer) {
        let graph = self.links.graph.borrow().clone();
        let name = self.accounts[i].name.clone();
        let listed = match graph.list_subscriptions(token).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(account = %name, error = %e, "cannot list the account's subscriptions; retrying");
                self.accounts[i].failed(Instant::now());
                return;
            }
        };
        for s in listed {
            let recorded = self
                .recorded
                .remove(&s.id)
                .filter(|r| r.account == name && self.accounts[i].sub.is_none());
            let expires =
                humantime::parse_rfc3339_weak(s.expiration_date_time.trim_end_matches('Z'))
                    .ok()
                    .filter(|t| *t > self.now());
            match (recorded, expires) {
                (Some(r), Some(expires)) => {
                    let ids = ids_of_resource(&s.resource);
                    tracing::info!(account = %name, subscription = %s.id, users = ids.len(),
                        "subscription from the last run kept");
                    // A rich subscription made with a certificate we no longer have (new
                    // key files) is made again.
                    let certificate_lost = r.rich && self.keys.as_ref().is_some_and(|k| k.rotated);
                    self.accounts[i].sub = Some(Sub {
                        id: s.id,
                        client_state: r.client_state,
                        expires,
                        ids,
                        healthy: !certificate_lost,
                        reauth: false,
                        rich: r.rich,
                    });
                }
                _ => {
                    tracing::info!(account = %name, subscription = %s.id, "unknown subscription of this account deleted");
                    if let Err(e) = graph.delete_subscription(token, &s.id).await {
                        tracing::warn!(account = %name, subscription = %s.id, error = %e, "cannot delete it");
                    }
                    self.store.write(Write::DropSubscription { id: s.id }).await;
                }
            }
        }
        let stale: Vec<String> = self
            .recorded
            .values()
            .filter(|r| r.account == name)
            .map(|r| r.id.clone())
            .collect();
        for id in stale {
            self.recorded.remove(&id);
            self.store.write(Write::DropSubscription { id }).await;
        }
        self.accounts[i].adopted = true;
    }

    pub(super) async fn create(&mut self, i: usize, token: &Bearer, ids: shards::Shard) {
        let graph = self.links.graph.borrow().clone();
        let name = self.accounts[i].name.clone();
        let client_state = random_hex(32);
        let expires = self.now() + LIFETIME;
        let id_refs: Vec<&str> = ids.iter().map(|s| &**s).collect();
        let lifecycle = self.config.lifecycle_url();
        let certificate = self.keys.as_ref().map(|k| {
            let c = k.current();
            (c.certificate_base64(), c.certificate_id().to_owned())
        });
        let public_url = self.config.public_url.clone();
        let new = NewSubscription {
            ids: &id_refs,
            notification_url: &public_url,
            lifecycle_url: &lifecycle,
            client_state: &client_state,
            expires,
            certificate: certificate.as_ref().map(|(c, i)| (c.as_str(), i.as_str())),
        };
        let mut answer = graph.create_subscription(token, &new).await;
        if matches!(answer, Err(GraphError::Unauthorized { .. })) {
            let Some(fresh) = self.token_after_refusal(i).await else {
                return;
            };
            answer = graph.create_subscription(&fresh, &new).await;
        }
        match answer {
            Ok(created) => {
                tracing::info!(account = %name, subscription = %created.id, users = ids.len(),
                    "subscription created");
                let sub = Sub {
                    id: created.id,
                    client_state,
                    expires,
                    ids,
                    healthy: true,
                    reauth: false,
                    rich: certificate.is_some(),
                };
                self.store
                    .write(Write::SaveSubscription(row(&name, &sub)))
                    .await;
                self.accounts[i].sub = Some(sub);
                self.accounts[i].succeeded();
            }
            Err(e) => {
                if matches!(e, GraphError::Unauthorized { .. }) {
                    self.accounts[i].drop_access();
                }
                // A 409 means Graph holds one we do not know: look again next time.
                self.accounts[i].adopted = false;
                if self.accounts[i].failures == 0 {
                    tracing::warn!(account = %name, error = %e, users = ids.len(),
                        "subscription not created; its users are polled; retrying with backoff");
                }
                self.store
                    .write(Write::RecordError {
                        component: "notifications".into(),
                        user: Some(name),
                        message: format!("subscription not created: {e}"),
                        at: self.clock.now(),
                    })
                    .await;
                self.accounts[i].failed(Instant::now());
            }
        }
    }

    pub(super) async fn drop_sub(&mut self, i: usize, delete: bool) {
        let Some(sub) = self.accounts[i].sub.take() else {
            return;
        };
        if delete && let Some(token) = self.token_if_usable(i).await {
            let graph = self.links.graph.borrow().clone();
            if let Err(e) = graph.delete_subscription(&token, &sub.id).await {
                tracing::warn!(account = %self.accounts[i].name, subscription = %sub.id, error = %e, "cannot delete subscription");
            }
        }
        self.store
            .write(Write::DropSubscription { id: sub.id })
            .await;
    }

    /// Graph refused the account's access token: refresh it (a revoked account shows here,
    /// and is signed out by `token`) so the caller can try once more.
    pub(super) async fn token_after_refusal(&mut self, i: usize) -> Option<Bearer> {
        self.accounts[i].drop_access();
        self.token(i).await
    }

    pub(super) async fn token_if_usable(&mut self, i: usize) -> Option<Bearer> {
        if self.accounts[i].refresh.is_none() || self.accounts[i].signed_out {
            return None;
        }
        self.token(i).await
    }

    pub(super) async fn delete_all(&mut self) {
        for i in 0..self.accounts.len() {
            self.drop_sub(i, true).await;
        }
        tracing::info!("subscriptions deleted (notifications.delete_on_shutdown)");
    }
}

pub(super) fn same_ids(a: &[Arc<str>], b: &[Arc<str>]) -> bool {
    a.len() == b.len() && {
        let set: HashSet<&Arc<str>> = a.iter().collect();
        b.iter().all(|id| set.contains(id))
    }
}

pub(super) fn row(account: &str, sub: &Sub) -> SubscriptionRow {
    SubscriptionRow {
        id: sub.id.clone(),
        account: account.to_owned(),
        client_state: sub.client_state.clone(),
        expires_at: sub
            .expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, millis),
        users: i64::try_from(sub.ids.len()).unwrap_or(i64::MAX),
        rich: sub.rich,
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

//! The store and subscription accounts: refresh tokens are for the daemon, never for
//! `status`.

use super::*;

#[tokio::test]
async fn account_tokens_are_readable_by_the_daemon_but_never_in_a_snapshot() {
    let store = Store::open_in_memory().unwrap();
    store
        .write(Write::SetAccountToken {
            account: "sync-1@contoso.com".into(),
            refresh_token: crate::secret::Secret::new("rt-secret-1"),
            at: 5,
        })
        .await;
    store
        .write(Write::SaveSubscription(SubscriptionRow {
            id: "sub-1".into(),
            account: "sync-1@contoso.com".into(),
            client_state: "cs-secret".into(),
            expires_at: 3_600_000,
            users: 650,
            rich: true,
        }))
        .await;
    let tokens = store.account_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].0, "sync-1@contoso.com");
    assert_eq!(tokens[0].1.expose(), "rt-secret-1");
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.accounts.len(), 1);
    assert_eq!(snapshot.subscriptions[0].users, 650);
    let shown = format!("{snapshot:?} {}", serde_json::to_string(&snapshot).unwrap());
    assert!(!shown.contains("rt-secret-1"), "{shown}");
    assert!(
        !serde_json::to_string(&snapshot)
            .unwrap()
            .contains("cs-secret")
    );

    store
        .write(Write::RemoveAccountToken {
            account: "sync-1@contoso.com".into(),
        })
        .await;
    store
        .write(Write::DropSubscription { id: "sub-1".into() })
        .await;
    assert!(store.account_tokens().await.unwrap().is_empty());
    let snapshot = store.snapshot().await.unwrap();
    assert!(snapshot.subscriptions.is_empty() && snapshot.accounts.is_empty());
}

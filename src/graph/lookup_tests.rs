//! User lookups through `$batch` and the `check` probe, against the scripted Graph of
//! [`super`] (its `Fake`).

use super::*;

#[tokio::test]
async fn users_are_resolved_through_batches_with_inner_429_retried() {
    let users = vec![
        (
            "id-anna",
            "Anna@x.com",
            "anna@x.onmicrosoft.com",
            vec!["SMTP:Anna@x.com"],
        ),
        ("id-bob", "", "bob@x.com", vec![]),
        (
            "id-carl",
            "carl@x.com",
            "carl@x.com",
            vec!["smtp:charles@x.com"],
        ),
        ("id-dup1", "team@x.com", "d1@x.com", vec![]),
        ("id-dup2", "TEAM@x.com", "d2@x.com", vec![]),
    ];
    let fake = Fake {
        users,
        inner_throttles: AtomicU32::new(1),
        ..Fake::default()
    };
    let (client, fake) = start(fake).await;
    let mut emails = ids(&[
        "ANNA@x.com",
        "bob@x.com",
        "charles@x.com",
        "team@x.com",
        "nobody@x.com",
    ]);
    emails.extend((0..20).map(|i| format!("filler{i}@x.com")));
    let result = client.resolve_users(&emails).await.unwrap();
    assert_eq!(result.len(), emails.len());
    let by = |e: &str| result.iter().find(|(k, _)| k == e).unwrap().1.clone();
    assert!(
        matches!(by("anna@x.com"), UserMatch::Matched { ref id, via: MatchedBy::Mail, .. } if id == "id-anna")
    );
    assert!(matches!(
        by("bob@x.com"),
        UserMatch::Matched {
            via: MatchedBy::Upn,
            ..
        }
    ));
    assert!(
        matches!(by("charles@x.com"), UserMatch::Matched { ref id, via: MatchedBy::ProxyAddress, .. } if id == "id-carl")
    );
    assert_eq!(
        by("team@x.com"),
        UserMatch::Duplicate {
            ids: ids(&["id-dup1", "id-dup2"])
        }
    );
    assert_eq!(by("nobody@x.com"), UserMatch::NotFound);
    let stats = client.stats();
    assert_eq!(stats.throttled, 1);
    assert!(stats.retries >= 1);
    // 25 addresses: 2 `mail` GETs (15 + 10) in one batch (+1 retry), then the 23 no `mail`
    // carries in 2 `userPrincipalName` GETs, then 22 proxy lookups (charles, nobody, 20
    // fillers) in batches of 20 and 2.
    assert_eq!(batch_sizes(&fake), vec![2, 1, 2, 20, 2]);
}

/// The number of requests in each `$batch` the fake received.
fn batch_sizes(fake: &Fake) -> Vec<usize> {
    fake.seen()
        .iter()
        .map(|s| s.body["requests"].as_array().unwrap().len())
        .collect()
}

#[tokio::test]
async fn later_stages_wait_for_full_batches_across_steps() {
    // m0..m149 have mail = UPN; u150..u449 only a UPN; "held" is a mail whose user has
    // another UPN, and another user's UPN.
    let mut users: Vec<Directory> = (0..150)
        .map(|i| {
            (
                format!("id-{i}"),
                format!("m{i}@x.com"),
                format!("m{i}@x.com"),
            )
        })
        .chain((150..450).map(|i| (format!("id-{i}"), String::new(), format!("u{i}@x.com"))))
        .map(|(id, mail, upn)| (leak(&id), leak(&mail), leak(&upn), vec![]))
        .collect();
    users.push(("id-h1", "held@x.com", "h1@x.com", vec![]));
    users.push(("id-h2", "", "held@x.com", vec![]));
    let (client, fake) = start(Fake {
        users,
        ..Fake::default()
    })
    .await;
    let mut stages = Stages::default();
    // Step 1: 300 addresses by mail; the 150 UPN-only ones wait for a full UPN batch.
    let step1: Vec<String> = (0..150)
        .map(|i| format!("m{i}@x.com"))
        .chain((150..300).map(|i| format!("u{i}@x.com")))
        .collect();
    let decided = client
        .resolve_step(&mut stages, &step1, false)
        .await
        .unwrap();
    assert_eq!(decided.len(), 150);
    assert_eq!(batch_sizes(&fake), vec![20]);
    // Step 2: 150 more UPN-only addresses fill a UPN batch: 300 decided by UPN.
    let step2: Vec<String> = (300..450).map(|i| format!("u{i}@x.com")).collect();
    let decided = client
        .resolve_step(&mut stages, &step2, false)
        .await
        .unwrap();
    assert_eq!(decided.len(), 300);
    assert!(decided.iter().all(|(_, m)| matches!(
        m,
        UserMatch::Matched {
            via: MatchedBy::Upn,
            ..
        }
    )));
    assert_eq!(batch_sizes(&fake), vec![20, 10, 20]);
    // Last step: an unknown address goes through every stage at once; the held one
    // through two, and comes out ambiguous.
    let last = ids(&["nobody@x.com", "held@x.com"]);
    let mut decided = client.resolve_step(&mut stages, &last, true).await.unwrap();
    decided.sort_by(|a, b| a.0.cmp(&b.0));
    let dup = UserMatch::Duplicate {
        ids: ids(&["id-h1", "id-h2"]),
    };
    assert_eq!(
        decided,
        vec![
            ("held@x.com".to_owned(), dup),
            ("nobody@x.com".to_owned(), UserMatch::NotFound)
        ]
    );
    assert_eq!(batch_sizes(&fake), vec![20, 10, 20, 1, 1, 1]);
}

type Directory = (&'static str, &'static str, &'static str, Vec<&'static str>);

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

#[tokio::test]
async fn probe_reports_each_permission() {
    let (client, fake) = start(Fake::default()).await;
    // GET /users answers `null` by default: push a page, then a 403 for the presence read,
    // then the 404 Graph gives for clearPresence on an unknown user.
    fake.push(200, vec![], json!({"value": [{"id": "u-first"}]}));
    fake.push(
        403,
        vec![],
        json!({"error": {"code": "Forbidden", "message": "no"}}),
    );
    fake.push(
        404,
        vec![],
        json!({"error": {"code": "NotFound", "message": "no user"}}),
    );
    let report = client.probe().await;
    assert!(report.token.result.is_ok());
    assert!(report.user_read.result.is_ok());
    assert!(matches!(
        report.presence_read.result,
        Err(GraphError::Forbidden { .. })
    ));
    assert!(report.presence_read.advice.contains("Presence.Read.All"));
    assert!(
        report
            .presence_read
            .advice
            .contains("/adminconsent?client_id=")
    );
    assert!(
        report.presence_write.result.is_ok(),
        "{:?}",
        report.presence_write
    );
    assert_eq!(fake.seen()[1].body, json!({"ids": ["u-first"]}));
}

/// A refused proxyAddresses lookup says "unchecked", not "not found": the caller keeps what it
/// knew instead of dropping a user's match.
#[tokio::test]
async fn a_refused_proxy_lookup_is_unchecked_not_not_found() {
    let fake = Fake {
        users: vec![("id-ann", "ann@x.com", "ann@x.com", vec![])],
        refuse_proxy: vec!["alias@x.com"],
        ..Fake::default()
    };
    let (client, _fake) = start(fake).await;
    let result = client
        .resolve_users(&ids(&["ann@x.com", "alias@x.com", "nobody@x.com"]))
        .await
        .unwrap();
    let by = |e: &str| result.iter().find(|(k, _)| k == e).unwrap().1.clone();
    assert!(matches!(by("ann@x.com"), UserMatch::Matched { .. }));
    assert_eq!(by("alias@x.com"), UserMatch::Unchecked);
    assert_eq!(by("nobody@x.com"), UserMatch::NotFound);
}

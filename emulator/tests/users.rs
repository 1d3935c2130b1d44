//! GET /users with the $filter subset, $select, $top paging, $count; GET /users/{id|upn}.

mod common;

use common::{answer, start};

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn ids(a: &common::Answer) -> Vec<String> {
    a.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_by_mail_upn_and_proxy_address_case_insensitively() {
    let fx = start(30).await;
    let f = "mail in ('FIRST.LAST2@contoso.com','first.last5@CONTOSO.com','nobody@contoso.com')";
    let a = fx.get(&format!("/users?$filter={}", enc(f))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(ids(&a), vec![fx.ids[1].clone(), fx.ids[4].clone()]);

    let f = "userPrincipalName eq 'USER0007@contoso.com' or userPrincipalName in ('user0009@contoso.com')";
    let a = fx.get(&format!("/users?$filter={}", enc(f))).await;
    assert_eq!(ids(&a), vec![fx.ids[6].clone(), fx.ids[8].clone()]);

    let f = "proxyAddresses/any(p:p eq 'SMTP:ALIAS3@contoso.com')";
    let a = fx.get(&format!("/users?$filter={}", enc(f))).await;
    assert_eq!(ids(&a), vec![fx.ids[2].clone()]);

    let f =
        "mail eq 'first.last4@contoso.com' or proxyAddresses/any(x:x eq 'smtp:alias4@contoso.com')";
    let a = fx.get(&format!("/users?$filter={}", enc(f))).await;
    assert_eq!(
        ids(&a),
        vec![fx.ids[3].clone()],
        "one user matched twice is listed once"
    );
}

#[tokio::test]
async fn quotes_are_escaped_by_doubling() {
    let fx = start(0).await;
    let mut u = common::user(1);
    u.mail = Some("o'brien@contoso.com".into());
    let id = fx.emu.add_user(u);
    let a = fx
        .get(&format!(
            "/users?$filter={}",
            enc("mail eq 'o''brien@contoso.com'")
        ))
        .await;
    assert_eq!(ids(&a), vec![id]);
}

#[tokio::test]
async fn more_than_15_values_in_one_in_is_400_unless_advanced_query() {
    let fx = start(20).await;
    let list: Vec<String> = (1..=16)
        .map(|i| format!("'first.last{i}@contoso.com'"))
        .collect();
    let f = format!("mail in ({})", list.join(","));
    let a = fx.get(&format!("/users?$filter={}", enc(&f))).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "Request_UnsupportedQuery");
    let f15 = format!("mail in ({})", list[..15].join(","));
    assert_eq!(
        ids(&fx.get(&format!("/users?$filter={}", enc(&f15))).await).len(),
        15
    );
    // With advanced query capabilities only the URL length limits it
    // (https://learn.microsoft.com/en-us/graph/filter-query-parameter).
    let url = fx.url(&format!("/users?$filter={}&$count=true", enc(&f)));
    let r = fx
        .http
        .get(url)
        .bearer_auth(&fx.token)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["@odata.count"], 16);
}

#[tokio::test]
async fn unparseable_or_unsupported_filter_is_400() {
    let fx = start(1).await;
    for f in [
        "mail eq",
        "mail in ('a'",
        "startswith(mail,'a')",
        "mail eq 'a' and id eq 'b'",
    ] {
        let a = fx.get(&format!("/users?$filter={}", enc(f))).await;
        assert_eq!(a.status, 400, "{f}");
        assert!(a.body["error"]["innerError"]["request-id"].is_string());
    }
}

#[tokio::test]
async fn select_top_and_next_link_paging() {
    let fx = start(7).await;
    let mut url = fx.url("/users?$select=id,mail,proxyAddresses&$top=3");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let a = answer(
            fx.http
                .get(&url)
                .bearer_auth(&fx.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        pages += 1;
        for u in a.body["value"].as_array().unwrap() {
            let keys: Vec<&String> = u.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["id", "mail", "proxyAddresses"]);
        }
        seen.extend(ids(&a));
        match a.body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, fx.ids);
    let a = fx.get("/users?$select=nosuchprop").await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn default_properties_without_select() {
    let fx = start(1).await;
    let a = fx.get("/users").await;
    let u = &a.body["value"][0];
    for p in [
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ] {
        assert!(u.get(p).is_some(), "{p} missing");
    }
    assert!(u.get("proxyAddresses").is_none());
    assert!(
        a.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#users")
    );
}

#[tokio::test]
async fn count_needs_consistency_level() {
    let fx = start(5).await;
    assert_eq!(fx.get("/users?$count=true").await.status, 400);
    let r = fx
        .http
        .get(fx.url("/users?$count=true&$top=2"))
        .bearer_auth(&fx.token)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.body["@odata.count"], 5);
    assert_eq!(a.body["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn get_user_by_id_or_upn_and_404() {
    let fx = start(3).await;
    let a = fx.get(&format!("/users/{}", fx.ids[1])).await;
    assert_eq!(a.body["userPrincipalName"], "user0002@contoso.com");
    let a = fx.get("/users/USER0003%40contoso.com?$select=id").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["id"], fx.ids[2].as_str());
    assert!(a.body.get("displayName").is_none());
    let a = fx.get("/users/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.code(), "Request_ResourceNotFound");
    let e = &a.body["error"]["innerError"];
    assert_eq!(e["request-id"].as_str(), a.header("request-id"));
    assert!(e["date"].is_string());
}

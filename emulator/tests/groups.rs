//! GET /groups?$filter=mailNickname eq '…' and GET /groups/{id}/transitiveMembers
//! (<https://learn.microsoft.com/en-us/graph/api/group-list>,
//! <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>).

mod common;

use common::{Fx, answer, start, token_for};
use graph_emulator::Group;
use serde_json::{Value, json};

const OUTER: &str = "0b7e6c1a-1111-4aaa-8bbb-000000000001";
const INNER: &str = "0b7e6c1a-1111-4aaa-8bbb-000000000002";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn group(id: &str, nickname: &str, members: Vec<String>) -> Group {
    Group {
        id: Some(id.into()),
        display_name: nickname.to_uppercase(),
        mail_nickname: nickname.into(),
        mail: Some(format!("{nickname}@contoso.com")),
        members,
    }
}

/// Users 1..=5; OUTER has users 1 and 2 and INNER; INNER has users 2, 3 and OUTER (a cycle).
async fn seeded() -> Fx {
    let fx = start(5).await;
    let id = |i: usize| fx.ids[i - 1].clone();
    fx.emu
        .add_group(group(OUTER, "pbx-users", vec![id(1), INNER.into(), id(2)]));
    fx.emu
        .add_group(group(INNER, "pbx-sales", vec![id(2), id(3), OUTER.into()]));
    fx
}

/// Every page of `path` (first page relative), following `@odata.nextLink`.
async fn all_pages(fx: &Fx, token: &str, path: &str) -> (Vec<Value>, usize) {
    let mut url = fx.url(path);
    let (mut out, mut pages) = (Vec::new(), 0);
    loop {
        let r = fx.http.get(&url).bearer_auth(token).send().await.unwrap();
        let a = answer(r).await;
        assert_eq!(a.status, 200, "{}", a.body);
        out.extend(a.body["value"].as_array().unwrap().iter().cloned());
        pages += 1;
        match a.body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return (out, pages),
        }
    }
}

#[tokio::test]
async fn transitive_members_lists_nested_users_once_and_the_nested_group() {
    let fx = seeded().await;
    let path =
        format!("/groups/{OUTER}/transitiveMembers?$select=id,mail,userPrincipalName&$top=2");
    let (members, pages) = all_pages(&fx, &fx.token, &path).await;
    assert_eq!(pages, 2);
    let types: Vec<&str> = members
        .iter()
        .map(|m| m["@odata.type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "#microsoft.graph.user",
            "#microsoft.graph.group",
            "#microsoft.graph.user",
            "#microsoft.graph.user"
        ]
    );
    let ids: Vec<&str> = members.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&fx.ids[0], INNER, &fx.ids[1], &fx.ids[2]]);
    assert_eq!(members[0]["userPrincipalName"], "user0001@contoso.com");
    assert_eq!(members[1]["mail"], "pbx-sales@contoso.com");
    assert!(
        members[1].get("userPrincipalName").is_none(),
        "a group has no UPN: {}",
        members[1]
    );
}

#[tokio::test]
async fn select_serves_phones_employee_id_and_extension_attributes() {
    let fx = start(0).await;
    let mut u = common::user(1);
    u.business_phones = vec!["+49 30 1234-5678".into()];
    u.mobile_phone = Some("+49 171 5550100".into());
    u.employee_id = Some("E-17".into());
    u.extension_attributes[0] = Some("4711".into());
    let id = fx.emu.add_user(u);
    fx.emu
        .add_group(group(OUTER, "pbx-users", vec![id.clone()]));
    let sel = "id,businessPhones,mobilePhone,employeeId,onPremisesExtensionAttributes";
    let a = fx
        .get(&format!("/groups/{OUTER}/transitiveMembers?$select={sel}"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = &a.body["value"][0];
    assert_eq!(m["businessPhones"], json!(["+49 30 1234-5678"]));
    assert_eq!(m["mobilePhone"], "+49 171 5550100");
    assert_eq!(m["employeeId"], "E-17");
    assert_eq!(
        m["onPremisesExtensionAttributes"]["extensionAttribute1"],
        "4711"
    );
    assert_eq!(
        m["onPremisesExtensionAttributes"]["extensionAttribute15"],
        Value::Null
    );
    // Single extension attributes are not selectable (user resource page).
    let a = fx
        .get(&format!(
            "/groups/{OUTER}/transitiveMembers?$select=onPremisesExtensionAttributes/extensionAttribute1"
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = fx
        .get(&format!(
            "/groups/{OUTER}/transitiveMembers?$select=telephoneNumber"
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn groups_are_found_by_mail_nickname() {
    let fx = seeded().await;
    let f = enc("mailNickname eq 'PBX-Sales'");
    let a = fx
        .get(&format!("/groups?$filter={f}&$select=id,mailNickname"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["value"],
        json!([{"id": INNER, "mailNickname": "pbx-sales"}])
    );
    let f = enc("mailNickname eq 'nobody'");
    let a = fx.get(&format!("/groups?$filter={f}")).await;
    assert_eq!(a.body["value"], json!([]));
    let f = enc("startswith(mailNickname,'pbx')");
    let a = fx.get(&format!("/groups?$filter={f}")).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn unknown_group_is_404_and_a_non_guid_is_400() {
    let fx = seeded().await;
    let a = fx
        .get("/groups/00000000-0000-0000-0000-000000000000/transitiveMembers")
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.code(), "Request_ResourceNotFound");
    assert!(a.body["error"]["innerError"]["request-id"].is_string());
    let a = fx.get("/groups/pbx-users/transitiveMembers").await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn without_a_group_permission_it_is_403() {
    let fx = seeded().await;
    fx.emu.add_app("users-only", "s1", &["User.Read.All"]);
    let token = token_for(&fx.http, &fx.emu, "users-only", "s1").await;
    let a = fx
        .get_as(&token, &format!("/groups/{OUTER}/transitiveMembers"))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.code(), "Authorization_RequestDenied");
    let f = enc("mailNickname eq 'pbx-users'");
    let a = fx.get_as(&token, &format!("/groups?$filter={f}")).await;
    assert_eq!(a.status, 403);
    // A higher permission the page lists works too.
    fx.emu
        .add_app("groups", "s2", &["Group.Read.All", "User.Read.All"]);
    let token = token_for(&fx.http, &fx.emu, "groups", "s2").await;
    let a = fx
        .get_as(&token, &format!("/groups/{OUTER}/transitiveMembers"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn without_user_read_members_come_with_limited_information() {
    let fx = seeded().await;
    fx.emu
        .add_app("members-only", "s1", &["GroupMember.Read.All"]);
    let token = token_for(&fx.http, &fx.emu, "members-only", "s1").await;
    let a = fx
        .get_as(
            &token,
            &format!("/groups/{INNER}/transitiveMembers?$select=id,mail"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let first = &a.body["value"][0];
    assert_eq!(first["@odata.type"], "#microsoft.graph.user");
    assert_eq!(first["id"], fx.ids[1].as_str());
    assert_eq!(first["mail"], Value::Null);
}

#[tokio::test]
async fn membership_changes_show_on_the_next_read_and_in_batch() {
    let fx = seeded().await;
    assert!(fx.emu.remove_group_member(INNER, &fx.ids[2]));
    assert!(fx.emu.add_group_member(OUTER, &fx.ids[4]));
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/groups/{OUTER}/transitiveMembers?$select=id")},
        {"id": "2", "method": "GET", "url": "/groups/00000000-0000-0000-0000-000000000000/transitiveMembers"},
    ]});
    let a = fx.post("/$batch", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let responses = a.body["responses"].as_array().unwrap();
    let one = responses.iter().find(|r| r["id"] == "1").unwrap();
    let ids: Vec<&str> = one["body"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&fx.ids[0], INNER, &fx.ids[1], &fx.ids[4]]);
    let two = responses.iter().find(|r| r["id"] == "2").unwrap();
    assert_eq!(two["status"], 404);
}

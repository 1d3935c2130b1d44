//! Users from an Entra group (`users.entra_group`), with the users file, against the Graph
//! emulator's groups (transitive members, nested groups): extensions cut out of the business
//! phone, the users file winning on a clash, members without an extension named, and a member
//! removed from the group forgotten (their call cleared).

mod common;

use common::*;
use graph_emulator::{Group, User};

fn phone_user(name: &str, phone: Option<&str>) -> User {
    let mail = format!("{name}@contoso.com");
    User {
        business_phones: phone.map(|p| vec![p.to_owned()]).unwrap_or_default(),
        ..user(name, &mail, Some(&mail), &[])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_group_and_its_nested_groups_are_users() {
    let mut w = World::new().await;
    let dave = w
        .graph
        .add_user(phone_user("dave", Some("+49 30 1234-2001")));
    let erin = w.graph.add_user(phone_user("erin", None));
    let frank = w
        .graph
        .add_user(phone_user("frank", Some("+49 30 1234-2002")));
    // Clashes with Alice's 1001 in the users file: the file wins.
    let clash = w
        .graph
        .add_user(phone_user("mallory", Some("+49 30 1234-1001")));
    for id in [&dave, &erin, &frank, &clash] {
        w.graph.set_user_presence(id, "Available", "Available");
    }
    let nested = w.graph.add_group(Group {
        id: None,
        display_name: "Sales Berlin".into(),
        mail_nickname: "sales-berlin".into(),
        mail: None,
        members: vec![frank.clone()],
    });
    let sales = w.graph.add_group(Group {
        id: None,
        display_name: "Sales".into(),
        mail_nickname: "sales".into(),
        mail: None,
        members: vec![dave.clone(), erin.clone(), clash.clone(), nested],
    });
    w.write_config("");
    w.add_to_section(
        "users",
        "entra_group = \"sales\"\nextension_regex = '(\\d{4})$'",
    );
    w.start().await;
    eventually(10, "group members matched", || {
        w.user_status("2001")["match"] == "matched" && w.user_status("2002")["match"] == "matched"
    })
    .await;
    assert_eq!(w.user_status("2001")["teams_id"], dave.as_str());
    assert_eq!(
        w.user_status(ALICE)["email"],
        "alice@contoso.com",
        "the file wins"
    );
    eventually(5, "the member without a phone named", || {
        w.status()["group_unusable"]
            .as_str()
            .is_some_and(|s| s.contains("erin@contoso.com"))
    })
    .await;
    // Dave on a call, then removed from the group: forgotten at the next read (a reload
    // reads it too), and his call cleared.
    w.pbx_event("2001", "speaking").await;
    let session = |w: &World| w.graph.app_session(&dave, &w.graph.client_id());
    eventually(5, "in a call", || session(&w).is_some()).await;
    assert!(w.graph.remove_group_member(&sales, &dave));
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    write_atomically(&w.config_path(), &format!("{config}\n"));
    eventually(10, "Dave forgotten", || session(&w).is_none()).await;
    eventually(5, "and gone from status", || {
        w.status()["users"]
            .as_array()
            .is_some_and(|u| u.iter().all(|u| u["extension"] != "2001"))
    })
    .await;
    w.stop().await.unwrap();
}

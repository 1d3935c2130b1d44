//! Group members against the Graph emulator, and the pure helpers.

use graph_emulator::{Emulator, Group, User};
use url::Url;

use super::*;
use crate::graph::{ClientCredential, test_settings};

const GROUP: &str = "5d6a1f0e-2222-4bbb-8ccc-000000000001";
const NESTED: &str = "5d6a1f0e-2222-4bbb-8ccc-000000000002";

fn user(n: u32, phone: Option<&str>) -> User {
    User {
        display_name: format!("User {n}"),
        user_principal_name: format!("user{n}@contoso.com"),
        mail: Some(format!("first.last{n}@contoso.com")),
        business_phones: phone.map(str::to_owned).into_iter().collect(),
        ..User::default()
    }
}

fn group(id: &str, nickname: &str, members: Vec<String>) -> Group {
    Group {
        id: Some(id.into()),
        display_name: nickname.into(),
        mail_nickname: nickname.into(),
        mail: None,
        members,
    }
}

fn client(emu: &Emulator) -> GraphClient {
    client_as(emu, &emu.client_id(), &emu.client_secret())
}

fn client_as(emu: &Emulator, id: &str, secret: &str) -> GraphClient {
    let base = Url::parse(&emu.base_url()).unwrap();
    let mut s = test_settings(&base);
    s.tenant_id = emu.tenant_id();
    s.client_id = id.into();
    s.credential = ClientCredential::Secret(secret.into());
    GraphClient::new(s).unwrap()
}

/// GROUP: users 1 and 2 and NESTED; NESTED: users 2 and 3 (a mobile phone only).
async fn seeded() -> (Emulator, Vec<String>) {
    let emu = Emulator::start().await.unwrap();
    let mut ids = vec![
        emu.add_user(user(1, Some("+49 30 1234-5678"))),
        emu.add_user(user(2, Some("2002"))),
    ];
    let mut third = user(3, None);
    third.mobile_phone = Some("+49 171 5550303".into());
    third.extension_attributes[4] = Some(" 3003 ".into());
    ids.push(emu.add_user(third));
    emu.add_group(group(
        GROUP,
        "pbx-users",
        vec![ids[0].clone(), NESTED.into(), ids[1].clone()],
    ));
    emu.add_group(group(
        NESTED,
        "pbx-sales",
        vec![ids[1].clone(), ids[2].clone()],
    ));
    (emu, ids)
}

#[tokio::test]
async fn members_are_the_users_of_nested_groups_once_with_their_attribute() {
    let (emu, ids) = seeded().await;
    let graph = client(&emu);
    let members = graph
        .group_members(GROUP, ExtensionAttribute::BusinessPhones)
        .await
        .unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = members
        .iter()
        .map(|m| (m.id.as_str(), m.upn.as_str(), m.attribute_value.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                ids[0].as_str(),
                "user1@contoso.com",
                Some("+49 30 1234-5678")
            ),
            (ids[1].as_str(), "user2@contoso.com", Some("2002")),
            (ids[2].as_str(), "user3@contoso.com", None),
        ]
    );
    assert_eq!(members[0].mail.as_deref(), Some("first.last1@contoso.com"));
    let seen = emu.requests();
    let read = seen
        .iter()
        .find(|r| r.path.ends_with("/transitiveMembers"))
        .unwrap();
    assert!(read.query.contains("$top=999"), "{}", read.query);
    assert!(read.query.contains("businessPhones"), "{}", read.query);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_nickname_is_resolved_and_extension_attributes_are_read() {
    let (emu, ids) = seeded().await;
    let graph = client(&emu);
    let members = graph
        .group_members("PBX-Sales", ExtensionAttribute::OnPremises(5))
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1].id, ids[2]);
    assert_eq!(members[1].attribute_value.as_deref(), Some("3003"));
    let mobile = graph
        .group_members("pbx-sales", ExtensionAttribute::MobilePhone)
        .await
        .unwrap();
    assert_eq!(
        mobile[1].attribute_value.as_deref(),
        Some("+49 171 5550303")
    );
    let none = graph
        .group_members("nobody", ExtensionAttribute::BusinessPhones)
        .await;
    assert!(matches!(none, Err(GraphError::NotFound { .. })), "{none:?}");
    emu.add_group(group(
        "5d6a1f0e-2222-4bbb-8ccc-000000000003",
        "pbx-sales",
        vec![],
    ));
    let two = graph
        .group_members("pbx-sales", ExtensionAttribute::BusinessPhones)
        .await;
    assert!(
        matches!(two, Err(GraphError::InvalidSettings(_))),
        "{two:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unknown_group_is_not_found_and_a_missing_permission_forbidden() {
    let (emu, _) = seeded().await;
    let unknown = client(&emu)
        .group_members(
            "5d6a1f0e-2222-4bbb-8ccc-0000000000ff",
            ExtensionAttribute::default(),
        )
        .await;
    assert!(
        matches!(unknown, Err(GraphError::NotFound { .. })),
        "{unknown:?}"
    );
    emu.add_app("users-only", "s1", &["User.Read.All"]);
    let denied = client_as(&emu, "users-only", "s1")
        .group_members(GROUP, ExtensionAttribute::default())
        .await;
    assert!(
        matches!(denied, Err(GraphError::Forbidden { .. })),
        "{denied:?}"
    );
    emu.add_app("members-only", "s2", &["GroupMember.Read.All"]);
    let limited = client_as(&emu, "members-only", "s2")
        .group_members(GROUP, ExtensionAttribute::default())
        .await;
    assert!(
        matches!(limited, Err(GraphError::Forbidden { ref code, .. }) if code == "LimitedInformation"),
        "{limited:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn pages_are_followed() {
    let emu = Emulator::start().await.unwrap();
    let ids: Vec<String> = (0..1005).map(|n| emu.add_user(user(n, None))).collect();
    emu.add_group(group(GROUP, "all", ids));
    let members = client(&emu)
        .group_members(GROUP, ExtensionAttribute::EmployeeId)
        .await
        .unwrap();
    assert_eq!(members.len(), 1005);
    let pages = emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/transitiveMembers"))
        .count();
    assert_eq!(pages, 2);
    emu.shutdown().await;
}

#[test]
fn extension_is_cut_by_the_first_group_or_taken_whole() {
    let last4 = Regex::new(r"(\d{4})$").unwrap();
    assert_eq!(
        extension_of("+49 30 1234-5678", Some(&last4)).as_deref(),
        Some("5678")
    );
    assert_eq!(extension_of("+49 30 12", Some(&last4)), None);
    let whole = Regex::new(r"\d{3}$").unwrap();
    assert_eq!(
        extension_of("ext 204", Some(&whole)).as_deref(),
        Some("204")
    );
    assert_eq!(extension_of(" 4711 ", None).as_deref(), Some("4711"));
    assert_eq!(extension_of("+4930123", None).as_deref(), Some("+4930123"));
    assert_eq!(extension_of("*21#", None).as_deref(), Some("*21#"));
    assert_eq!(extension_of("+49 30 1234-5678", None), None);
    assert_eq!(extension_of("12+3", None), None);
    assert_eq!(extension_of("+", None), None);
    assert_eq!(extension_of("   ", None), None);
    let letters = Regex::new(r"^(\w+)").unwrap();
    assert_eq!(extension_of("abc 123", Some(&letters)), None);
}

#[test]
fn attribute_names_parse_case_insensitively_and_display_as_graph_spells_them() {
    for (name, want) in [
        ("businessPhones", ExtensionAttribute::BusinessPhones),
        ("MOBILEPHONE", ExtensionAttribute::MobilePhone),
        ("employeeId", ExtensionAttribute::EmployeeId),
        (
            "onPremisesExtensionAttributes.extensionAttribute1",
            ExtensionAttribute::OnPremises(1),
        ),
        (
            "onpremisesextensionattributes.extensionattribute15",
            ExtensionAttribute::OnPremises(15),
        ),
    ] {
        assert_eq!(name.parse::<ExtensionAttribute>(), Ok(want), "{name}");
    }
    assert_eq!(
        ExtensionAttribute::OnPremises(7).to_string(),
        "onPremisesExtensionAttributes.extensionAttribute7"
    );
    for bad in [
        "onPremisesExtensionAttributes.extensionAttribute0",
        "onPremisesExtensionAttributes.extensionAttribute16",
        "onPremisesExtensionAttributes.extensionAttribute01",
        "onPremisesExtensionAttributes.extensionAttribute",
        "ipPhone",
        "",
    ] {
        assert!(bad.parse::<ExtensionAttribute>().is_err(), "{bad}");
    }
    let tel = "telephoneNumber".parse::<ExtensionAttribute>().unwrap_err();
    assert!(tel.to_string().contains("businessPhones"), "{tel}");
    assert_eq!(
        ExtensionAttribute::default(),
        ExtensionAttribute::BusinessPhones
    );
}

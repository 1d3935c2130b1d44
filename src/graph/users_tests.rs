//! Unit tests for the pure parts of user matching.

use super::*;

fn user(id: &str, mail: Option<&str>, upn: &str, proxies: &[&str]) -> DirUser {
    DirUser {
        id: id.into(),
        mail: mail.map(str::to_string),
        upn: Some(upn.into()),
        proxy_addresses: proxies.iter().map(|p| p.to_string()).collect(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn odata_literals_double_single_quotes() {
    assert_eq!(odata_string("a@b.com"), "'a@b.com'");
    assert_eq!(odata_string("o'brien@b.com"), "'o''brien@b.com'");
    assert_eq!(odata_string("''"), "''''''");
}

#[test]
fn in_filter_lists_quoted_values() {
    let f = in_filter("mail", &strings(&["a@x.com", "o'b@x.com"]));
    assert_eq!(f, "mail in ('a@x.com','o''b@x.com')");
}

#[test]
fn proxy_filter_uses_a_lambda_with_smtp_prefix() {
    assert_eq!(
        proxy_filter("a@x.com"),
        "proxyAddresses/any(x:x eq 'smtp:a@x.com')"
    );
}

#[test]
fn users_url_encodes_the_filter_including_plus() {
    let url = users_url(&in_filter("mail", &strings(&["a+b@x.com"])));
    assert_eq!(
        url,
        "/users?$filter=mail%20in%20%28%27a%2Bb%40x.com%27%29\
         &$select=id,mail,userPrincipalName,proxyAddresses"
    );
    // Decoding gives back exactly the filter.
    let encoded = url
        .strip_prefix("/users?$filter=")
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, "mail in ('a+b@x.com')");
}

#[test]
fn chunks_are_15_per_filter_and_20_per_batch() {
    let emails: Vec<String> = (0..31).map(|i| format!("u{i}@x.com")).collect();
    let sizes: Vec<usize> = emails.chunks(FILTER_CHUNK).map(<[String]>::len).collect();
    assert_eq!(sizes, vec![15, 15, 1]);
    let urls: Vec<String> = (0..45).map(|i| i.to_string()).collect();
    let sizes: Vec<usize> = urls.chunks(BATCH_MAX).map(<[String]>::len).collect();
    assert_eq!(sizes, vec![20, 20, 5]);
}

fn wanted(addresses: &[&str]) -> Index {
    let owned: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
    Index::for_addresses(&owned)
}

#[test]
fn addresses_nobody_asked_for_are_not_kept() {
    let mut index = wanted(&["a@x.com"]);
    index.add(&user(
        "1",
        Some("a@x.com"),
        "a@x.com",
        &["smtp:alias@x.com"],
    ));
    assert_eq!(index.decide("alias@x.com"), UserMatch::NotFound);
    assert!(matches!(index.decide("a@x.com"), UserMatch::Matched { .. }));
}

#[test]
fn match_by_mail_is_case_insensitive() {
    let mut index = wanted(&["anna.smith@contoso.com", "bob@contoso.com"]);
    index.add(&user(
        "1",
        Some("Anna.Smith@Contoso.com"),
        "anna@contoso.onmicrosoft.com",
        &[],
    ));
    assert_eq!(
        index.decide("anna.smith@contoso.com"),
        UserMatch::Matched {
            id: "1".into(),
            upn: "anna@contoso.onmicrosoft.com".into(),
            via: MatchedBy::Mail
        }
    );
    assert_eq!(index.decide("bob@contoso.com"), UserMatch::NotFound);
}

#[test]
fn match_by_upn_and_by_smtp_alias() {
    let mut index = wanted(&["bob@contoso.com", "robert@contoso.com", "/o=x"]);
    index.add(&user(
        "1",
        None,
        "Bob@Contoso.com",
        &[
            "SMTP:Bob@Contoso.com",
            "smtp:robert@contoso.com",
            "sip:bob@contoso.com",
            "x500:/o=x",
        ],
    ));
    assert!(matches!(
        index.decide("bob@contoso.com"),
        UserMatch::Matched {
            via: MatchedBy::Upn,
            ..
        }
    ));
    assert!(matches!(
        index.decide("robert@contoso.com"),
        UserMatch::Matched {
            via: MatchedBy::ProxyAddress,
            ..
        }
    ));
    // sip: and x500: are not e-mail addresses.
    assert_eq!(index.decide("/o=x"), UserMatch::NotFound);
}

#[test]
fn the_best_property_wins_for_one_user() {
    let mut index = wanted(&["a@x.com"]);
    // The same user is returned by the proxy query first, then by the mail query.
    let u = user("1", Some("a@x.com"), "a@x.com", &["SMTP:a@x.com"]);
    index.add(&u);
    index.add(&u);
    assert!(matches!(
        index.decide("a@x.com"),
        UserMatch::Matched {
            via: MatchedBy::Mail,
            ..
        }
    ));
}

#[test]
fn two_users_with_one_address_are_a_duplicate() {
    let mut index = wanted(&["shared@x.com"]);
    index.add(&user("b-2", Some("shared@x.com"), "one@x.com", &[]));
    index.add(&user("a-1", None, "two@x.com", &["smtp:SHARED@x.com"]));
    assert_eq!(
        index.decide("shared@x.com"),
        UserMatch::Duplicate {
            ids: vec!["a-1".into(), "b-2".into()]
        }
    );
}

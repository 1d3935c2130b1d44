//! Bodies as Asterisk, Kamailio, FreeSWITCH and RFC 4235 write them (the samples live in
//! `tests/fuzz/corpus/dialog_info/`, where the fuzz test starts from them too), and broken ones.

use super::*;

macro_rules! sample {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz/corpus/dialog_info/",
            $name
        ))
    };
}

fn ok(body: &[u8]) -> DialogInfo {
    match parse(body) {
        Ok(info) => info,
        Err(e) => panic!("refused: {e}\n{}", String::from_utf8_lossy(body)),
    }
}

fn err(body: &str) -> DialogInfoError {
    match parse(body.as_bytes()) {
        Ok(info) => panic!("accepted: {info:?}"),
        Err(e) => e,
    }
}

fn doc(inner: &str) -> String {
    format!(
        r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@b">{inner}</dialog-info>"#
    )
}

#[test]
fn asterisk_idle_ringing_in_use_and_on_hold() {
    let idle = ok(sample!("asterisk_idle.xml"));
    assert_eq!(idle.entity, "sip:1001@192.0.2.10");
    assert_eq!((idle.version, idle.state), (0, DocState::Full));
    assert_eq!(idle.dialogs.len(), 1);
    assert_eq!(idle.dialogs[0].id, "1001");
    assert_eq!(idle.dialogs[0].state, DialogState::Terminated);
    assert_eq!(idle.dialogs[0].direction, None);

    let ringing = ok(sample!("asterisk_ringing.xml"));
    let d = &ringing.dialogs[0];
    assert_eq!(d.state, DialogState::Early);
    assert_eq!(d.direction, Some(Direction::Recipient));
    let remote = d.remote.as_ref().unwrap();
    assert_eq!(remote.identity.as_deref(), Some("sip:1002@192.0.2.10"));
    assert_eq!(remote.display.as_deref(), Some("Bob Example"));
    assert_eq!(remote.target.as_deref(), Some("sip:1002@192.0.2.10"));
    assert_eq!(
        d.local.as_ref().unwrap().display.as_deref(),
        Some("Alice Example")
    );
    assert!(!d.is_held());

    let busy = ok(sample!("asterisk_inuse.xml"));
    assert_eq!(busy.dialogs[0].state, DialogState::Confirmed);
    assert!(!busy.dialogs[0].is_held());

    let held = ok(sample!("asterisk_onhold.xml"));
    assert_eq!(held.dialogs[0].state, DialogState::Confirmed);
    assert!(held.dialogs[0].is_held());
    assert_eq!(
        held.dialogs[0].local.as_ref().unwrap().rendering,
        Some(false)
    );
}

#[test]
fn kamailio_aggregates_several_dialogs_with_ids_tags_and_identities() {
    let info = ok(sample!("kamailio_two_dialogs.xml"));
    assert_eq!(info.dialogs.len(), 2);
    let a = &info.dialogs[0];
    assert_eq!(a.id, "as7d900as8");
    assert_eq!(a.call_id.as_deref(), Some("a84b4c76e66710"));
    assert_eq!(a.local_tag.as_deref(), Some("1928301774"));
    assert_eq!(a.remote_tag.as_deref(), Some("hh76a"));
    assert_eq!(a.direction, Some(Direction::Initiator));
    assert_eq!(a.state, DialogState::Confirmed);
    assert_eq!(
        a.remote.as_ref().unwrap().target.as_deref(),
        Some("sip:bobster@phone21.example.org")
    );
    assert_eq!(info.dialogs[1].state, DialogState::Early);
    assert_eq!(info.dialogs[1].direction, Some(Direction::Recipient));

    let dummy = ok(sample!("kamailio_dummy.xml"));
    assert_eq!(
        dummy.version, 1,
        "Kamailio pads the version with spaces after the quote"
    );
    assert_eq!(dummy.dialogs[0].state, DialogState::Terminated);
}

#[test]
fn freeswitch_hold_is_early_with_rendering_off() {
    let info = ok(sample!("freeswitch_hold.xml"));
    let d = &info.dialogs[0];
    assert_eq!(d.state, DialogState::Early);
    assert!(d.is_held());
    assert_eq!(
        d.remote.as_ref().unwrap().target.as_deref(),
        Some("sip:**1001@pbx.example.com")
    );
}

#[test]
fn chan_sip_partial_state() {
    let info = ok(sample!("chan_sip_partial.xml"));
    assert_eq!((info.version, info.state), (7, DocState::Partial));
    assert_eq!(info.dialogs[0].state, DialogState::Early);
}

#[test]
fn prefixed_namespace_and_extensions_are_read_and_skipped() {
    let info = ok(sample!("prefixed_with_extensions.xml"));
    assert_eq!(info.version, u32::MAX);
    assert_eq!(info.state, DocState::Partial);
    assert_eq!(info.dialogs.len(), 1, "sa:line-info is not a dialog");
    let d = &info.dialogs[0];
    assert_eq!(d.id, "d1");
    // The <di:state> inside <sa:extra> belongs to an extension: the dialog's own state stands.
    assert_eq!(d.state, DialogState::Terminated);
}

#[test]
fn elements_of_another_namespace_are_not_the_package() {
    let e = err(r#"<dialog-info xmlns="urn:example:other" version="1" state="full" entity="x"/>"#);
    assert_eq!(e, DialogInfoError::NotDialogInfo);
    let info = ok(doc(
        r#"<x:dialog xmlns:x="urn:example:other" id="no"><x:state>confirmed</x:state></x:dialog>"#,
    )
    .as_bytes());
    assert!(info.dialogs.is_empty());
    // Without any namespace at all, the names are read as the package's (old devices).
    let bare = ok(br#"<dialog-info version="2" state="full" entity="e"><dialog id="1"><state>early</state></dialog></dialog-info>"#);
    assert_eq!(bare.dialogs[0].state, DialogState::Early);
}

#[test]
fn empty_documents_entities_and_cdata() {
    let info = ok(br#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="5" state="full" entity="sip:a@b"/>"#);
    assert!(info.dialogs.is_empty());
    let info = ok(doc(
        r#"<dialog id="a&amp;b"><state>con&#102;irmed</state><local><identity display="A &quot;B&quot;"><![CDATA[sip:x@y]]></identity></local></dialog>"#,
    )
    .as_bytes());
    let d = &info.dialogs[0];
    assert_eq!(d.id, "a&b");
    assert_eq!(d.state, DialogState::Confirmed);
    let local = d.local.as_ref().unwrap();
    assert_eq!(local.display.as_deref(), Some("A \"B\""));
    assert_eq!(local.identity.as_deref(), Some("sip:x@y"));
}

#[test]
fn a_dialog_listed_twice_keeps_its_furthest_state() {
    let info = ok(doc(
        r#"<dialog id="d"><state>terminated</state></dialog><dialog id="d"><state>confirmed</state></dialog><dialog id="e"><state>early</state></dialog>"#,
    )
    .as_bytes());
    assert_eq!(info.dialogs.len(), 2);
    assert_eq!(info.dialogs[0].state, DialogState::Terminated);
}

#[test]
fn malformed_bodies_are_typed_errors() {
    use DialogInfoError as E;
    assert_eq!(err(""), E::Empty);
    assert_eq!(err("  \n"), E::Empty);
    assert_eq!(parse(&[0xff, 0xfe]).unwrap_err(), E::NotUtf8);
    assert_eq!(err("<presence/>"), E::NotDialogInfo);
    assert!(matches!(err("<dialog-info"), E::Xml(_) | E::Truncated));
    assert!(matches!(
        err(r#"<dialog-info version="1" state="full"/>"#),
        E::Missing {
            attribute: "entity",
            ..
        }
    ));
    assert!(matches!(
        err(r#"<dialog-info state="full" entity="e"/>"#),
        E::Missing {
            attribute: "version",
            ..
        }
    ));
    assert_eq!(
        err(r#"<dialog-info version="-1" state="full" entity="e"/>"#),
        E::BadVersion("-1".into())
    );
    assert_eq!(
        err(r#"<dialog-info version="4294967296" state="full" entity="e"/>"#),
        E::BadVersion("4294967296".into())
    );
    assert_eq!(
        err(r#"<dialog-info version="1" state="some" entity="e"/>"#),
        E::BadDocState("some".into())
    );
    assert_eq!(
        err(&doc("<dialog><state>early</state></dialog>")),
        E::Missing {
            element: "dialog",
            attribute: "id"
        }
    );
    assert_eq!(err(&doc(r#"<dialog id="x"/>"#)), E::NoState("x".into()));
    assert_eq!(
        err(&doc(r#"<dialog id="x"><state>ringing</state></dialog>"#)),
        E::BadDialogState("ringing".into())
    );
    assert_eq!(
        err(&doc(
            r#"<dialog id="x" direction="up"><state>early</state></dialog>"#
        )),
        E::BadDirection("up".into())
    );
    assert_eq!(
        err(
            r#"<dialog-info version="1" state="full" entity="e"><dialog id="x"><state>early</state></dialog>"#
        ),
        E::Truncated
    );
    assert!(matches!(
        err(&doc("<dialog id=\"x\"><state>early</dialog>")),
        E::Xml(_)
    ));
    assert!(matches!(err(&doc("<p:dialog id=\"x\"/>")), E::Xml(_)));
    assert!(matches!(err(&doc("<dialog id=\"&bogus;\"/>")), E::Xml(_)));
    assert_eq!(
        err(r#"<!DOCTYPE d [<!ENTITY a "b">]><dialog-info version="1" state="full" entity="e"/>"#),
        E::DocType
    );
    assert!(matches!(err(&format!("{}<x/>", doc(""))), E::Xml(_)));
}

#[test]
fn sizes_are_bounded() {
    use DialogInfoError as E;
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        parse(&big).unwrap_err(),
        E::TooLarge {
            size: MAX_BODY + 1,
            limit: MAX_BODY
        }
    );

    let one = r#"<dialog id="x"><state>confirmed</state></dialog>"#;
    let at_limit = doc(&one.repeat(MAX_DIALOGS));
    assert_eq!(ok(at_limit.as_bytes()).dialogs.len(), 1, "same id, merged");
    let many: String = (0..=MAX_DIALOGS)
        .map(|i| format!(r#"<dialog id="{i}"><state>early</state></dialog>"#))
        .collect();
    assert_eq!(err(&doc(&many)), E::TooManyDialogs(MAX_DIALOGS));

    let long = "x".repeat(MAX_TEXT + 1);
    assert_eq!(
        err(&doc(&format!(
            r#"<dialog id="{long}"><state>early</state></dialog>"#
        ))),
        E::TooLong(MAX_TEXT)
    );
    let identity = format!(
        r#"<dialog id="x"><state>early</state><remote><identity>{long}</identity></remote></dialog>"#
    );
    assert_eq!(err(&doc(&identity)), E::TooLong(MAX_TEXT));
    // A long value in an extension is not kept, so not refused.
    let ext = format!(r#"<dialog id="x" vendor="{long}"><state>early</state></dialog>"#);
    assert_eq!(ok(doc(&ext).as_bytes()).dialogs.len(), 1);

    let deep = format!(
        "{}{}",
        "<x>".repeat(MAX_DEPTH + 1),
        "</x>".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(err(&doc(&deep)), E::TooDeep(MAX_DEPTH));
}

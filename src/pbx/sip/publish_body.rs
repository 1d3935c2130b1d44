//! What a PUBLISH to the SIP presence server carries for a user's mapped Teams state, pure:
//! a PIDF document (RFC 3863, with an RPID activity, RFC 4480) for phones that watch
//! `Event: presence`, and a dialog-info document (RFC 4235) for BLF keys that watch
//! `Event: dialog`: a busy state is one `confirmed` dialog (the lamp lit), any other an idle
//! entity (no dialog, the lamp off).

use std::fmt::Write;

/// What the lamp and the presence document say for one PBX state name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// PIDF `<basic>`: open unless the user is offline.
    pub open: bool,
    /// RPID activity (`busy`, `on-the-phone`, `meeting`, `away`), if any.
    pub activity: Option<&'static str>,
    /// Whether a BLF lamp is lit (a `confirmed` dialog).
    pub lit: bool,
}

/// The default mapping's state names (docs/state-mapping.md) as shown over SIP; a state name
/// of the admin's own is shown busy unless it is one of the calm ones below.
pub fn shown(state: &str) -> Shown {
    let (open, activity, lit) = match state {
        "available" => (true, None, false),
        "away" => (true, Some("away"), false),
        "offline" | "unknown" => (false, None, false),
        "in_call" => (true, Some("on-the-phone"), true),
        "in_meeting" => (true, Some("meeting"), true),
        _ => (true, Some("busy"), true),
    };
    Shown {
        open,
        activity,
        lit,
    }
}

/// `application/pidf+xml` for `entity` (a SIP URI); `note` is the Teams presence in words.
pub fn pidf(entity: &str, state: &str, note: &str) -> String {
    let s = shown(state);
    let mut xml = String::with_capacity(512);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{}\">",
        escape(entity)
    );
    xml.push_str("<tuple id=\"teams\"><status><basic>");
    xml.push_str(if s.open { "open" } else { "closed" });
    xml.push_str("</basic></status></tuple>\n");
    if let Some(activity) = s.activity {
        let _ = writeln!(
            xml,
            "<dm:person id=\"p\"><rpid:activities><rpid:{activity}/></rpid:activities></dm:person>"
        );
    }
    let _ = writeln!(xml, "<note>{}</note>", escape(note));
    xml.push_str("</presence>\n");
    xml
}

/// `application/dialog-info+xml` (full state) for `entity`, at `version`: one `confirmed`
/// dialog when the lamp is lit, none when it is off (idle). Not a `terminated` dialog:
/// Kamailio's presence module refuses to update a publication whose last state was
/// `terminated` ("Trying to update an already terminated state"), so the lamp could not
/// light again.
pub fn dialog_info(entity: &str, state: &str, version: u32) -> String {
    let dialog = match shown(state).lit {
        true => "<dialog id=\"teams\"><state>confirmed</state></dialog>\n",
        false => "",
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" \
         state=\"full\" entity=\"{}\">\n{dialog}</dialog-info>\n",
        escape(entity)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::sip::dialog_info::{self, DialogState};

    #[test]
    fn busy_states_light_the_lamp_and_calm_ones_do_not() {
        for busy in ["in_call", "in_meeting", "busy", "dnd", "my_own_state"] {
            assert!(shown(busy).lit, "{busy}");
        }
        for calm in ["available", "away", "offline", "unknown"] {
            assert!(!shown(calm).lit, "{calm}");
        }
        assert!(!shown("offline").open);
        assert_eq!(shown("in_call").activity, Some("on-the-phone"));
    }

    #[test]
    fn the_dialog_body_reads_back_through_our_own_parser() {
        let entity = "sip:teams-1001@example.com";
        let lit = dialog_info::parse(dialog_info(entity, "in_meeting", 3).as_bytes()).unwrap();
        assert_eq!(lit.version, 3);
        assert_eq!(lit.dialogs[0].state, DialogState::Confirmed);
        let off = dialog_info::parse(dialog_info(entity, "available", 4).as_bytes()).unwrap();
        assert!(off.dialogs.is_empty(), "idle: no dialog");
    }

    #[test]
    fn pidf_escapes_what_it_quotes() {
        let doc = pidf(
            "sip:teams-1001@example.com",
            "dnd",
            "Busy/<Presenting> & \"x\"",
        );
        assert!(doc.contains("<basic>open</basic>"));
        assert!(doc.contains("<rpid:busy/>"));
        assert!(doc.contains("Busy/&lt;Presenting&gt; &amp; &quot;x&quot;"));
        let offline = pidf("sip:teams-1001@example.com", "offline", "Offline");
        assert!(offline.contains("<basic>closed</basic>"));
    }
}

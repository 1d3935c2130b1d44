//! The children of `<dialog-info>`, read event by event with a stack of where the reader is:
//! dialogs, their `<state>`, `<local>`/`<remote>` with `<identity>` and `<target>` (and its
//! `+sip.rendering` param). Everything else is skipped with all it holds.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

use super::dialog_info::{
    Dialog, DialogInfo, DialogInfoError, DialogState, Direction, MAX_DEPTH, MAX_DIALOGS, MAX_TEXT,
    NAMESPACE, Participant, Root,
};

/// The element the reader is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// Not read: an extension, or an element of the package we do not need.
    Skip,
    Dialog,
    State,
    Local,
    Remote,
    Identity,
    Target,
}

/// A dialog whose end tag has not come yet.
struct Pending {
    dialog: Dialog,
    state: Option<DialogState>,
}

/// The reader of one document's children.
pub(super) struct Body {
    root: Root,
    stack: Vec<Ctx>,
    dialogs: Vec<Dialog>,
    current: Option<Pending>,
    /// Text of the `<state>` or `<identity>` being read.
    text: String,
}

pub(super) fn xml_error(e: impl std::fmt::Display) -> DialogInfoError {
    let mut message = e.to_string();
    message.truncate(200);
    DialogInfoError::Xml(message)
}

/// A value that is kept, within [`MAX_TEXT`].
fn kept(value: String) -> Result<String, DialogInfoError> {
    if value.len() > MAX_TEXT {
        return Err(DialogInfoError::TooLong(MAX_TEXT));
    }
    Ok(value)
}

/// The element's unprefixed attributes (RFC 4235's own), by local name; prefixed ones are
/// extensions and left out.
pub(super) fn attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
) -> Result<Vec<(String, String)>, DialogInfoError> {
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(xml_error)?;
        let (ns, local) = reader.resolver().resolve_attribute(attr.key);
        if !matches!(ns, ResolveResult::Unbound) {
            continue;
        }
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(xml_error)?;
        out.push((local.as_ref().to_owned(), value.into_owned()));
    }
    Ok(out)
}

impl Body {
    pub(super) fn new(root: Root) -> Body {
        Body {
            root,
            stack: Vec::new(),
            dialogs: Vec::new(),
            current: None,
            text: String::new(),
        }
    }

    pub(super) fn run(
        mut self,
        reader: &mut NsReader<&[u8]>,
    ) -> Result<DialogInfo, DialogInfoError> {
        if !self.root.empty {
            self.children(reader)?;
        }
        trailer(reader)?;
        Ok(self.finish())
    }

    fn children(&mut self, reader: &mut NsReader<&[u8]>) -> Result<(), DialogInfoError> {
        loop {
            let (ns, event) = reader.read_resolved_event().map_err(xml_error)?;
            let ours = match ns {
                ResolveResult::Bound(n) => n.0 == NAMESPACE,
                ResolveResult::Unbound => self.root.unbound,
                ResolveResult::Unknown(p) => {
                    return Err(DialogInfoError::Xml(format!("undeclared prefix {p:?}")));
                }
            };
            match event {
                Event::Start(s) => self.open(reader, &s, ours)?,
                Event::Empty(s) => {
                    self.open(reader, &s, ours)?;
                    self.close()?;
                }
                Event::End(_) if self.stack.is_empty() => return Ok(()),
                Event::End(_) => self.close()?,
                Event::Text(t) => self.push_text(&t.xml10_content())?,
                Event::CData(c) => self.push_text(&c.xml10_content())?,
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref().map_err(xml_error)? {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                            .ok_or_else(|| DialogInfoError::Xml("unknown entity".to_owned()))?
                            .to_owned(),
                    };
                    self.push_text(&resolved)?;
                }
                Event::DocType(_) => return Err(DialogInfoError::DocType),
                Event::Eof => return Err(DialogInfoError::Truncated),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            }
        }
    }

    fn open(
        &mut self,
        reader: &NsReader<&[u8]>,
        start: &BytesStart<'_>,
        ours: bool,
    ) -> Result<(), DialogInfoError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(DialogInfoError::TooDeep(MAX_DEPTH));
        }
        let name = start.local_name();
        let name = if ours { name.as_ref() } else { "" };
        let ctx = match (self.stack.last(), name) {
            (None, "dialog") => self.open_dialog(reader, start)?,
            (Some(Ctx::Dialog), "state") => Ctx::State,
            (Some(Ctx::Dialog), "local") => Ctx::Local,
            (Some(Ctx::Dialog), "remote") => Ctx::Remote,
            (Some(Ctx::Local | Ctx::Remote), "identity") => {
                let display = attribute(reader, start, "display")?;
                if let Some(p) = self.participant() {
                    p.display = display;
                }
                Ctx::Identity
            }
            (Some(Ctx::Local | Ctx::Remote), "target") => {
                let uri = attribute(reader, start, "uri")?;
                if let Some(p) = self.participant() {
                    p.target = uri;
                }
                Ctx::Target
            }
            (Some(Ctx::Target), "param") => {
                self.param(reader, start)?;
                Ctx::Skip
            }
            _ => Ctx::Skip,
        };
        if matches!(ctx, Ctx::State | Ctx::Identity) {
            self.text.clear();
        }
        self.stack.push(ctx);
        Ok(())
    }

    fn open_dialog(
        &mut self,
        reader: &NsReader<&[u8]>,
        start: &BytesStart<'_>,
    ) -> Result<Ctx, DialogInfoError> {
        if self.dialogs.len() >= MAX_DIALOGS {
            return Err(DialogInfoError::TooManyDialogs(MAX_DIALOGS));
        }
        let mut dialog = Dialog {
            id: String::new(),
            call_id: None,
            local_tag: None,
            remote_tag: None,
            direction: None,
            state: DialogState::Terminated,
            local: None,
            remote: None,
        };
        let mut id = None;
        for (name, value) in attributes(reader, start)? {
            match name.as_str() {
                "id" => id = Some(kept(value)?),
                "call-id" => dialog.call_id = Some(kept(value)?),
                "local-tag" => dialog.local_tag = Some(kept(value)?),
                "remote-tag" => dialog.remote_tag = Some(kept(value)?),
                "direction" => dialog.direction = Some(Direction::parse(&value)?),
                _ => {}
            }
        }
        dialog.id = id.ok_or(DialogInfoError::Missing {
            element: "dialog",
            attribute: "id",
        })?;
        self.current = Some(Pending {
            dialog,
            state: None,
        });
        Ok(Ctx::Dialog)
    }

    /// The `<local>` or `<remote>` being read (made on first use); `None` outside a dialog,
    /// which the stack never lets happen.
    fn participant(&mut self) -> Option<&mut Participant> {
        let remote = self.stack.contains(&Ctx::Remote);
        let dialog = &mut self.current.as_mut()?.dialog;
        let side = if remote {
            &mut dialog.remote
        } else {
            &mut dialog.local
        };
        Some(side.get_or_insert_with(Participant::default))
    }

    fn param(
        &mut self,
        reader: &NsReader<&[u8]>,
        start: &BytesStart<'_>,
    ) -> Result<(), DialogInfoError> {
        let attrs = attributes(reader, start)?;
        let get = |key: &str| attrs.iter().find(|(n, _)| n == key).map(|(_, v)| v.trim());
        if get("pname").is_some_and(|p| p.eq_ignore_ascii_case("+sip.rendering")) {
            let rendering = match get("pvalue").map(str::to_ascii_lowercase).as_deref() {
                Some("no" | "false") => Some(false),
                Some("yes" | "true") => Some(true),
                _ => None,
            };
            if let Some(p) = self.participant() {
                p.rendering = rendering;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), DialogInfoError> {
        match self.stack.pop() {
            Some(Ctx::Dialog) => {
                if let Some(p) = self.current.take() {
                    let state = p
                        .state
                        .ok_or_else(|| DialogInfoError::NoState(p.dialog.id.clone()))?;
                    self.dialogs.push(Dialog { state, ..p.dialog });
                }
            }
            Some(Ctx::State) => {
                let state = DialogState::parse(&self.text)?;
                if let Some(p) = self.current.as_mut() {
                    p.state = Some(state);
                }
            }
            Some(Ctx::Identity) => {
                let identity = kept(self.text.trim().to_owned())?;
                if let Some(p) = self.participant() {
                    p.identity = Some(identity);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn push_text(&mut self, text: &str) -> Result<(), DialogInfoError> {
        if matches!(self.stack.last(), Some(Ctx::State | Ctx::Identity)) {
            if self.text.len() + text.len() > MAX_TEXT {
                return Err(DialogInfoError::TooLong(MAX_TEXT));
            }
            self.text.push_str(text);
        }
        Ok(())
    }

    /// The document. A dialog listed twice (Kamailio aggregates every publication of an
    /// entity, so an old `confirmed` can sit next to the later `terminated` of the same id)
    /// keeps its furthest state along the state machine.
    fn finish(self) -> DialogInfo {
        let mut dialogs: Vec<Dialog> = Vec::with_capacity(self.dialogs.len());
        for d in self.dialogs {
            match dialogs.iter_mut().find(|k| k.id == d.id) {
                Some(known) if d.state > known.state => *known = d,
                Some(_) => {}
                None => dialogs.push(d),
            }
        }
        DialogInfo {
            entity: self.root.entity,
            version: self.root.version,
            unversioned: self.root.unversioned,
            state: self.root.state,
            dialogs,
        }
    }
}

/// One unprefixed attribute, kept.
fn attribute(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    key: &str,
) -> Result<Option<String>, DialogInfoError> {
    attributes(reader, start)?
        .into_iter()
        .find(|(n, _)| n == key)
        .map(|(_, v)| kept(v))
        .transpose()
}

/// After the root element: only comments, processing instructions and white space.
fn trailer(reader: &mut NsReader<&[u8]>) -> Result<(), DialogInfoError> {
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if t.xml10_content().trim().is_empty() => {}
            _ => {
                return Err(DialogInfoError::Xml(
                    "content after the root element".to_owned(),
                ));
            }
        }
    }
}

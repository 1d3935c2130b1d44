//! Maps byte offsets of the TOML text to line numbers and key paths, so every error can say
//! where it is (`sync.poll_interval (line 7)`), including toml's own errors, which only carry
//! a byte span.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The parsed document with spans, kept next to its text.
pub(crate) struct Spans<'a> {
    text: &'a str,
    /// `None` when the text is not even valid TOML; lines can still be computed.
    doc: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Spans<'a> {
    /// Parses `text` for spans; invalid TOML leaves only line counting available.
    pub fn new(text: &'a str) -> Spans<'a> {
        Spans {
            text,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Line where the dotted `key` (e.g. `sync.poll_interval`) is written, if it is.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let mut table = self.doc.as_ref()?.get_ref();
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (k, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
            if parts.peek().is_none() {
                return Some(self.line_at(k.span().start));
            }
            table = v.get_ref().as_table()?;
        }
        None
    }

    /// The dotted key whose key or value span contains `offset` (the deepest one). Tables
    /// are searched in full: a table's own span covers only its `[header]`.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        find(self.doc.as_ref()?.get_ref(), offset).map(|path| path.join("."))
    }
}

fn find<'t>(table: &'t DeTable<'_>, offset: usize) -> Option<Vec<&'t str>> {
    for (k, v) in table.iter() {
        if contains(k, offset) {
            return Some(vec![k.get_ref()]);
        }
        let inner = match v.get_ref() {
            DeValue::Table(t) => find(t, offset),
            _ => None,
        };
        if let Some(mut path) = inner {
            path.insert(0, k.get_ref());
            return Some(path);
        }
        if contains(v, offset) {
            return Some(vec![k.get_ref()]);
        }
    }
    None
}

fn contains<T>(s: &Spanned<T>, offset: usize) -> bool {
    let span = s.span();
    span.start <= offset && offset < span.end.max(span.start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[azure]\ntenant_id = \"t\"\n\n[sync]\npoll_interval = \"30s\"\n";

    #[test]
    fn finds_lines_of_keys() {
        let s = Spans::new(TEXT);
        assert_eq!(s.line_of("azure.tenant_id"), Some(2));
        assert_eq!(s.line_of("sync.poll_interval"), Some(5));
        assert_eq!(s.line_of("sync.state_db"), None);
        assert_eq!(s.line_of("azure"), Some(1));
    }

    #[test]
    fn finds_keys_at_offsets() {
        let s = Spans::new(TEXT);
        let at = TEXT.find("30s").unwrap();
        assert_eq!(s.key_at(at).as_deref(), Some("sync.poll_interval"));
        assert_eq!(s.line_at(at), 5);
        let at = TEXT.find("tenant_id").unwrap();
        assert_eq!(s.key_at(at).as_deref(), Some("azure.tenant_id"));
    }
}

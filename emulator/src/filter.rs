//! The `$filter` subset the emulator understands on GET /users:
//!
//! - `mail in ('a','b')`, `userPrincipalName in (...)`, `id in (...)`
//! - `mail eq 'a'`, `userPrincipalName eq 'a'`, `id eq 'a'`
//! - `proxyAddresses/any(x:x eq 'smtp:a@b.com')` with any lambda variable name
//!   (<https://learn.microsoft.com/en-us/graph/filter-query-parameter>; whether Graph needs
//!   advanced-query headers for it: UNVERIFIED)
//! - clauses joined by ` or `, optionally parenthesised.
//!
//! String literals use `''` for a quote; comparisons are case-insensitive. Anything else
//! (`and`, `startsWith`, other properties) is refused as unsupported.

/// A user property the filter can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Mail,
    Upn,
    ProxyAddresses,
}

/// One clause: `field` equals one of `values` (lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    pub field: Field,
    pub values: Vec<String>,
    /// True when written with `in (...)` (the 15-value limit applies per `in`, `$filter` page).
    pub is_in: bool,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterError {
    /// Not valid OData (Graph: 400 BadRequest "Invalid filter clause").
    Syntax(String),
    /// Valid OData the emulator does not implement.
    Unsupported(String),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

/// Parses a filter into clauses joined by `or`.
pub(crate) fn parse(filter: &str) -> Result<Vec<Clause>, FilterError> {
    let mut p = Parser {
        s: filter.as_bytes(),
        pos: 0,
    };
    let clauses = p.or_expr()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.syntax("unexpected text"));
    }
    Ok(clauses)
}

impl Parser<'_> {
    fn syntax(&self, what: &str) -> FilterError {
        FilterError::Syntax(format!("{what} at position {}", self.pos))
    }

    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        if self.ident().eq_ignore_ascii_case(kw) {
            return true;
        }
        self.pos = save;
        false
    }

    fn literal(&mut self) -> Result<String, FilterError> {
        if !self.eat(b'\'') {
            return Err(self.syntax("expected a quoted string"));
        }
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err(self.syntax("unterminated string")),
                Some(b'\'') if self.s.get(self.pos + 1) == Some(&b'\'') => {
                    out.push(b'\'');
                    self.pos += 2;
                }
                Some(b'\'') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    out.push(*c);
                    self.pos += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).to_lowercase())
    }

    fn or_expr(&mut self) -> Result<Vec<Clause>, FilterError> {
        let mut out = self.term()?;
        while self.keyword("or") {
            out.extend(self.term()?);
        }
        self.ws();
        let save = self.pos;
        if self.keyword("and") {
            self.pos = save;
            return Err(FilterError::Unsupported(
                "'and' is not supported by the emulator".into(),
            ));
        }
        Ok(out)
    }

    fn term(&mut self) -> Result<Vec<Clause>, FilterError> {
        if self.eat(b'(') {
            let inner = self.or_expr()?;
            if !self.eat(b')') {
                return Err(self.syntax("expected ')'"));
            }
            return Ok(inner);
        }
        let name = self.ident();
        if name.is_empty() {
            return Err(self.syntax("expected a property name"));
        }
        if name.eq_ignore_ascii_case("proxyAddresses") {
            return self.lambda().map(|c| vec![c]);
        }
        let field = match name.to_ascii_lowercase().as_str() {
            "id" => Field::Id,
            "mail" => Field::Mail,
            "userprincipalname" => Field::Upn,
            other => {
                return Err(FilterError::Unsupported(format!(
                    "filtering on '{other}' is not supported by the emulator"
                )));
            }
        };
        self.comparison(field).map(|c| vec![c])
    }

    fn comparison(&mut self, field: Field) -> Result<Clause, FilterError> {
        if self.keyword("eq") {
            let v = self.literal()?;
            return Ok(Clause {
                field,
                values: vec![v],
                is_in: false,
            });
        }
        if !self.keyword("in") {
            let op = self.ident();
            if op.is_empty() {
                return Err(self.syntax("expected an operator"));
            }
            return Err(FilterError::Unsupported(format!(
                "operator '{op}' is not supported by the emulator"
            )));
        }
        if !self.eat(b'(') {
            return Err(self.syntax("expected '(' after 'in'"));
        }
        let mut values = vec![self.literal()?];
        while self.eat(b',') {
            values.push(self.literal()?);
        }
        if !self.eat(b')') {
            return Err(self.syntax("expected ')'"));
        }
        Ok(Clause {
            field,
            values,
            is_in: true,
        })
    }

    /// `proxyAddresses/any(x:x eq '...')` (lambda syntax of the `$filter` page)
    fn lambda(&mut self) -> Result<Clause, FilterError> {
        if !self.eat(b'/') || !self.keyword("any") || !self.eat(b'(') {
            return Err(self.syntax("expected '/any(' after proxyAddresses"));
        }
        let var = self.ident();
        if var.is_empty() || !self.eat(b':') {
            return Err(self.syntax("expected 'x:' in lambda"));
        }
        let var2 = self.ident();
        if var2 != var {
            return Err(self.syntax("lambda variable mismatch"));
        }
        if !self.keyword("eq") {
            return Err(FilterError::Unsupported(
                "only 'eq' is supported inside any()".into(),
            ));
        }
        let v = self.literal()?;
        if !self.eat(b')') {
            return Err(self.syntax("expected ')'"));
        }
        Ok(Clause {
            field: Field::ProxyAddresses,
            values: vec![v],
            is_in: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_forms() {
        let c = parse("mail in ('A@x.com', 'o''brien@x.com') or userPrincipalName eq 'U@x.com'")
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].field, Field::Mail);
        assert_eq!(c[0].values, vec!["a@x.com", "o'brien@x.com"]);
        assert_eq!(c[1].field, Field::Upn);
        let c = parse("(proxyAddresses/any(p:p eq 'SMTP:a@x.com'))").unwrap();
        assert_eq!(c[0].field, Field::ProxyAddresses);
        assert_eq!(c[0].values, vec!["smtp:a@x.com"]);
    }

    #[test]
    fn refuses_the_rest() {
        assert!(matches!(parse("mail eq"), Err(FilterError::Syntax(_))));
        assert!(matches!(parse("mail in ('a'"), Err(FilterError::Syntax(_))));
        assert!(matches!(
            parse("mail eq 'a' and id eq 'b'"),
            Err(FilterError::Unsupported(_))
        ));
        assert!(parse("startswith(mail,'a')").is_err());
        assert!(matches!(
            parse("displayName eq 'a'"),
            Err(FilterError::Unsupported(_))
        ));
        assert!(matches!(
            parse("proxyAddresses/any(x:y eq 'a')"),
            Err(FilterError::Syntax(_))
        ));
    }
}

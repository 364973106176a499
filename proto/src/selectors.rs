//! Kubernetes label and field selectors: parsing the query-string syntax
//! (`labelSelector=app=web,tier!=db,env in (prod,qa),!legacy`,
//! `fieldSelector=spec.nodeName=n1,status.phase!=Failed`) and matching objects.
//!
//! The grammar and the matching rules are those of apimachinery's `labels.Parse` and
//! `fields.ParseSelector`, because every client (kubectl, kube-rs, client-go) builds these
//! strings: `!=` and `notin` match objects *without* the label, an empty selector matches
//! everything, and field values may escape `,`, `=` and `\` with a backslash.

use std::collections::BTreeMap;

pub use crate::error::SelectorError;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

impl LabelRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::DoesNotExist(k) => !labels.contains_key(k),
            LabelRequirement::GreaterThan(k, n) => {
                labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n)
            }
            LabelRequirement::LessThan(k, n) => {
                labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n)
            }
        }
    }
}

/// A conjunction of label requirements; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

/// A structured selector's expression operator (as in `matchExpressions`).
pub fn expression_requirement(key: &str, operator: &str, values: &[String]) -> Result<LabelRequirement, SelectorError> {
    let key = key.to_string();
    match operator {
        "In" if !values.is_empty() => Ok(LabelRequirement::In(key, values.to_vec())),
        "NotIn" if !values.is_empty() => Ok(LabelRequirement::NotIn(key, values.to_vec())),
        "In" | "NotIn" => Err(SelectorError(format!("{operator}: values must be non-empty for key {key:?}"))),
        "Exists" if values.is_empty() => Ok(LabelRequirement::Exists(key)),
        "DoesNotExist" if values.is_empty() => Ok(LabelRequirement::DoesNotExist(key)),
        "Exists" | "DoesNotExist" => Err(SelectorError(format!("{operator}: values must be empty for key {key:?}"))),
        other => Err(SelectorError(format!("{other:?} is not a valid label selector operator"))),
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = LabelParser { chars: input.chars().collect(), pos: 0, input };
        parser.selector()
    }

    /// A selector from `matchLabels` and `matchExpressions` (key, operator, values).
    pub fn from_parts<'a>(
        match_labels: impl IntoIterator<Item = (&'a String, &'a String)>,
        expressions: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
    ) -> Result<LabelSelector, SelectorError> {
        let mut requirements: Vec<LabelRequirement> =
            match_labels.into_iter().map(|(k, v)| LabelRequirement::Equals(k.clone(), v.clone())).collect();
        for (key, op, values) in expressions {
            requirements.push(expression_requirement(key, op, values)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

struct LabelParser<'a> {
    chars: Vec<char>,
    pos: usize,
    input: &'a str,
}

impl LabelParser<'_> {
    fn error(&self, what: &str) -> SelectorError {
        SelectorError(format!("unable to parse requirement: {what} (in selector {:?})", self.input))
    }

    fn skip_spaces(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n && self.chars[self.pos..self.pos + n].iter().copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// A key or value: anything up to whitespace or one of `,=!()<>`.
    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !c.is_whitespace() && !",=!()<>".contains(c)) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn selector(&mut self) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        self.skip_spaces();
        if self.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_spaces();
            match self.peek() {
                None => return Ok(LabelSelector { requirements }),
                Some(',') => self.pos += 1,
                Some(c) => return Err(self.error(&format!("found '{c}', expected: ','"))),
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        self.skip_spaces();
        if self.eat("!") {
            self.skip_spaces();
            let key = self.key()?;
            return Ok(LabelRequirement::DoesNotExist(key));
        }
        let key = self.key()?;
        self.skip_spaces();
        match self.peek() {
            None | Some(',') => return Ok(LabelRequirement::Exists(key)),
            _ => {}
        }
        if self.eat("==") || self.eat("=") {
            return Ok(LabelRequirement::Equals(key, self.value()?));
        }
        if self.eat("!=") {
            return Ok(LabelRequirement::NotEquals(key, self.value()?));
        }
        if self.eat(">") {
            return Ok(LabelRequirement::GreaterThan(key, self.integer()?));
        }
        if self.eat("<") {
            return Ok(LabelRequirement::LessThan(key, self.integer()?));
        }
        let op = self.word();
        match op.as_str() {
            "in" => Ok(LabelRequirement::In(key, self.value_set()?)),
            "notin" => Ok(LabelRequirement::NotIn(key, self.value_set()?)),
            "" => Err(self.error(&format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                self.peek().map(String::from).unwrap_or_default()
            ))),
            other => Err(self.error(&format!("found '{other}', expected: in, notin, =, ==, !=, gt, lt"))),
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        let key = self.word();
        if key.is_empty() {
            let found = self.peek().map(String::from).unwrap_or_else(|| "end of string".into());
            return Err(self.error(&format!("found '{found}', expected: identifier")));
        }
        if key.len() > 317 || key.starts_with('/') || key.ends_with('/') || key.matches('/').count() > 1 {
            return Err(self.error(&format!("invalid label key {key:?}")));
        }
        if let Some(why) = qualified_name_error(&key) {
            return Err(self.error(&format!("key: Invalid value: {key:?}: {why}")));
        }
        Ok(key)
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_spaces();
        let value = self.word();
        if value.len() > 63 {
            return Err(self.error(&format!("invalid label value {value:?}: must be no more than 63 characters")));
        }
        Ok(value)
    }

    fn integer(&mut self) -> Result<i64, SelectorError> {
        let v = self.value()?;
        v.parse().map_err(|_| self.error(&format!("for 'Gt', 'Lt' operators, the value must be an integer: {v:?}")))
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.skip_spaces();
        if !self.eat("(") {
            return Err(self.error("found end of values, expected: '('"));
        }
        let mut values = Vec::new();
        loop {
            self.skip_spaces();
            let v = self.word();
            if !v.is_empty() {
                values.push(v);
            }
            self.skip_spaces();
            if self.eat(")") {
                break;
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ')' in the set of values"));
            }
        }
        if values.is_empty() {
            return Err(self.error("for 'in', 'notin' operators, values set can't be empty"));
        }
        Ok(values)
    }
}

/// One field requirement: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A conjunction of field requirements; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Why `key` is not a qualified name (`[prefix/]name`, apimachinery's `IsQualifiedName`),
/// in its words; None when it is one.
pub fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.len() > 253 {
            return Some("prefix part must be no more than 253 characters".into());
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !p.split('.').all(label_ok) {
            return Some(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                    .into(),
            );
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    let inner_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = name.as_bytes()[0].is_ascii_alphanumeric() && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !inner_ok || !ends_ok {
        return Some(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                .into(),
        );
    }
    None
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax.
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.trim().is_empty() {
                continue;
            }
            requirements.push(parse_field_term(&term)?);
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an `=` requirement demands for `field`, if any (used to route a watch or
    /// a list to one name without scanning).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && !r.negated).map(|r| r.value.as_str())
    }

    /// Matches with `value_of(field)`; a field the object lacks reads as "".
    pub fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = value_of(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }
}

/// Splits on `sep` except where escaped with a backslash; escapes stay in the parts.
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            parts.last_mut().unwrap().push(c);
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            parts.last_mut().unwrap().push(c);
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().unwrap().push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError(format!("invalid field selector: invalid escape sequence: \\{e}")))
                }
                None => return Err(SelectorError("invalid field selector: unterminated escape sequence".into())),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_field_term(term: &str) -> Result<FieldRequirement, SelectorError> {
    // Find the first unescaped operator.
    let chars: Vec<char> = term.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '!' if chars.get(i + 1) == Some(&'=') => return field_req(&chars, i, 2, true),
            '=' if chars.get(i + 1) == Some(&'=') => return field_req(&chars, i, 2, false),
            '=' => return field_req(&chars, i, 1, false),
            _ => i += 1,
        }
    }
    Err(SelectorError(format!("invalid selector: '{term}'; can't understand '{term}'")))
}

fn field_req(chars: &[char], at: usize, op_len: usize, negated: bool) -> Result<FieldRequirement, SelectorError> {
    let field: String = chars[..at].iter().collect();
    let value: String = chars[at + op_len..].iter().collect();
    let field = field.trim().to_string();
    if field.is_empty() {
        return Err(SelectorError("invalid field selector: empty field name".into()));
    }
    // As apimachinery's `UnescapeValue`: an operator character in a value must be escaped
    // (`metadata.name==a==b` is an error, not a match on "a==b").
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '=' | '!' | ',' => {
                return Err(SelectorError(format!("invalid field selector: unescaped character in value: {c}")))
            }
            _ => {}
        }
    }
    Ok(FieldRequirement { field: unescape(&field)?, value: unescape(&value)?, negated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let web = labels(&[("app", "web"), ("env", "prod"), ("replicas", "3")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("env in (prod, qa)", true),
            ("env in (qa)", false),
            ("env notin (qa)", true),
            ("missing notin (qa)", true),
            ("missing in (qa)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,env=prod", true),
            ("app=web,env=qa", false),
            ("replicas>2", true),
            ("replicas<2", false),
            ("example.com/tier", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&web), *want, "{sel}");
        }
    }

    #[test]
    fn bad_label_selectors_are_errors() {
        for bad in ["app=web,", "=web", "env in prod", "env in ()", "app web", "a/b/c=1", "x>y", "!"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn structured_selectors_check_operators() {
        let vals = vec!["a".to_string()];
        assert!(expression_requirement("k", "In", &vals).is_ok());
        assert!(expression_requirement("k", "In", &[]).is_err());
        assert!(expression_requirement("k", "Exists", &vals).is_err());
        assert!(expression_requirement("k", "Near", &vals).is_err());
        let ml = labels(&[("app", "web")]);
        let s = LabelSelector::from_parts(&ml, [("tier", "DoesNotExist", &[][..])]).unwrap();
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "x")])));
    }

    #[test]
    fn field_selectors_parse_escapes_and_negation() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert_eq!(s.required_value("spec.nodeName"), Some("n1"));
        let get = |phase: &'static str| {
            move |f: &str| match f {
                "spec.nodeName" => Some("n1".to_string()),
                "status.phase" => Some(phase.to_string()),
                _ => None,
            }
        };
        assert!(s.matches(get("Running")));
        assert!(!s.matches(get("Failed")));
        let e = FieldSelector::parse(r"metadata.name==a\,b").unwrap();
        assert_eq!(e.requirements[0].value, "a,b");
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse(r"a=b\q").is_err());
        // A field the object lacks reads as "".
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(|_| None));
    }

    #[test]
    fn selectors_refuse_what_kube_apiserver_refuses() {
        let long = "a".repeat(70);
        let e = LabelSelector::parse(&format!("{long}=x")).unwrap_err().to_string();
        assert!(e.contains("name part must be no more than 63 characters"), "{e}");
        assert!(LabelSelector::parse(&format!("{}=x", "a".repeat(63))).is_ok());
        assert!(LabelSelector::parse("example.com/app=x").is_ok());
        assert!(LabelSelector::parse("Example.com/app=x").is_err());
        assert!(LabelSelector::parse("-app=x").is_err());
        let e = FieldSelector::parse("metadata.name==a==b").unwrap_err().to_string();
        assert_eq!(e, "invalid field selector: unescaped character in value: =");
        let ok = FieldSelector::parse(r"metadata.name==a\=\=b").unwrap();
        assert_eq!(ok.requirements[0].value, "a==b");
    }
}

//! Decoding request bodies (JSON and YAML) into `serde_json::Value`, with the limits that
//! keep hostile bodies cheap: YAML nesting is bounded before the YAML parser runs, and
//! large YAML bodies are parsed off the async workers.

use std::cell::RefCell;
use std::fmt;

use axum::body::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::resource::error::ApiError;

/// The deepest collection nesting a body may have: serde_json's recursion limit, so JSON and
/// YAML bodies are refused at the same depth.
pub const MAX_NESTING: usize = 128;

/// YAML bodies above this size are parsed on the blocking pool: libyaml's cost grows
/// with the size (and worse with flow nesting), and an async worker stalled on one body
/// stalls every request and watch scheduled on it.
const BLOCKING_YAML_BYTES: usize = 64 * 1024;

/// Whether the flow collections (`[`, `{`) of a YAML text nest deeper than `limit`.
///
/// libyaml checks every pending simple key on each token, one per open flow collection,
/// so its time is quadratic in the flow depth: 200 KB of `[[[[…` took 19 s. This scan is
/// linear and deliberately conservative: brackets inside quoted strings count too (a
/// string would need more than `limit` unclosed brackets to be refused), while brackets
/// in comments do not. A comment can only start outside a quoted scalar in real YAML, and
/// brackets inside a quoted scalar are not tokens, so skipping from a `#` to the end of the
/// line never hides a real bracket from the count.
pub fn yaml_flow_depth_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut prev = b'\n';
    for &b in text {
        if in_comment {
            in_comment = b != b'\n' && b != b'\r';
        } else {
            match b {
                b'#' if prev.is_ascii_whitespace() => in_comment = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = b;
    }
    false
}

/// A decoded body and the paths of the keys it repeats (`spec.replicas`), which
/// `fieldValidation` turns into an error or warnings as kube-apiserver does.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

fn parse_yaml(body: &[u8]) -> Result<Decoded, ApiError> {
    if yaml_flow_depth_exceeds(body, MAX_NESTING) {
        return Err(ApiError::BadRequest(format!("error decoding YAML: exceeded max depth of {MAX_NESTING}")));
    }
    let duplicates = RefCell::new(Vec::new());
    let value = ValueSeed { path: None, duplicates: &duplicates }
        .deserialize(serde_yaml::Deserializer::from_slice(body))
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    Ok(Decoded { value, duplicates: duplicates.into_inner() })
}

/// Decodes a YAML (or JSON, a subset) body, on the blocking pool when it is large.
pub async fn yaml(body: &Bytes) -> Result<Decoded, ApiError> {
    if body.len() <= BLOCKING_YAML_BYTES {
        return parse_yaml(body);
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || parse_yaml(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("decoding YAML: {e}")))?
}

/// Decodes a JSON body; `what` names it in the error ("the request body").
pub fn json(body: &[u8], what: &str) -> Result<Decoded, ApiError> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = ValueSeed { path: None, duplicates: &duplicates }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ApiError::BadRequest(format!("error decoding {what} as JSON: {e}")))?;
    Ok(Decoded { value, duplicates: duplicates.into_inner() })
}

/// Where a value sits in the body, built into a string only for a duplicate.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

struct PathNode<'a> {
    parent: Option<&'a PathNode<'a>>,
    step: Step<'a>,
}

fn render_path(node: Option<&PathNode<'_>>, last: &str) -> String {
    let mut steps = Vec::new();
    let mut cur = node;
    while let Some(n) = cur {
        steps.push(n);
        cur = n.parent;
    }
    let mut out = String::new();
    for n in steps.iter().rev() {
        match n.step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(last);
    out
}

/// Builds a `serde_json::Value` as its own `Deserialize` does, except that repeated keys
/// are recorded (the last one still wins, as in kube-apiserver's non-strict decoding) and
/// non-finite numbers (YAML's `.inf`, `.nan`) are errors instead of silently becoming null.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    path: Option<&'a PathNode<'a>>,
    duplicates: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            let shown = if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            };
            E::custom(format!("json: unsupported value: {shown}"))
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let node = PathNode { parent: self.path, step: Step::Index(out.len()) };
            match seq.next_element_seed(ValueSeed { path: Some(&node), duplicates: self.duplicates })? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let node = PathNode { parent: self.path, step: Step::Key(&key) };
            let value = map.next_value_seed(ValueSeed { path: Some(&node), duplicates: self.duplicates })?;
            if out.insert(key.clone(), value).is_some() {
                self.duplicates.borrow_mut().push(render_path(self.path, &key));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Refuses or reports repeated keys as `fieldValidation` asks (kube-apiserver's wording:
/// `duplicate field "spec.replicas"`); returns the warnings to send.
pub fn check_duplicates(
    duplicates: &[String],
    validation: crate::registry::FieldValidation,
) -> Result<Vec<String>, ApiError> {
    use crate::registry::FieldValidation;
    let messages = duplicates.iter().map(|d| format!("duplicate field \"{d}\""));
    match validation {
        _ if duplicates.is_empty() => Ok(Vec::new()),
        FieldValidation::Strict => {
            Err(ApiError::BadRequest(format!("strict decoding error: {}", messages.collect::<Vec<_>>().join(", "))))
        }
        FieldValidation::Warn => Ok(messages.collect()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_depth_is_counted_outside_comments() {
        assert!(!yaml_flow_depth_exceeds(b"a: [[1], {b: [2]}]\n", 3));
        assert!(yaml_flow_depth_exceeds(b"a: [[1], {b: [2]}]\n", 2));
        assert!(yaml_flow_depth_exceeds(b"a: [[[1]]]\n", 2));
        // Closed collections do not add up.
        assert!(!yaml_flow_depth_exceeds("[[1]] ".repeat(1000).as_bytes(), 2));
        // A comment's brackets are not tokens; the next line's are.
        assert!(!yaml_flow_depth_exceeds(b"a: 1 # [[[[[\nb: [1]\n", 2));
        assert!(yaml_flow_depth_exceeds(b"a: 1 # x\nb: [[[1]]]\n", 2));
        // `#` inside a word is not a comment.
        assert!(yaml_flow_depth_exceeds(b"a: x#[[[1]]]\n", 2));
    }

    #[test]
    fn deep_yaml_is_refused_quickly_and_shallow_yaml_decodes() {
        let bomb = "[".repeat(200 * 1024);
        let started = std::time::Instant::now();
        let e = parse_yaml(bomb.as_bytes()).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        assert_eq!(e.to_string(), "error decoding YAML: exceeded max depth of 128");
        let ok = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse_yaml(ok.as_bytes()).is_ok());
    }

    #[test]
    fn repeated_keys_are_reported_with_their_paths() {
        let d = json(br#"{"spec": {"replicas": 1, "replicas": 2, "c": [{"n": 1, "n": 2}]}}"#, "body").unwrap();
        assert_eq!(d.value["spec"]["replicas"], 2, "the last one wins");
        assert_eq!(d.duplicates, vec!["spec.replicas".to_string(), "spec.c[0].n".to_string()]);
        let y = parse_yaml(b"metadata:\n  name: a\n  name: b\n").unwrap();
        assert_eq!(y.duplicates, vec!["metadata.name".to_string()]);
        assert!(json(br#"{"a": 1}"#, "body").unwrap().duplicates.is_empty());
        use crate::registry::FieldValidation;
        let e = check_duplicates(&d.duplicates, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"strict decoding error: duplicate field "spec.replicas", duplicate field "spec.c[0].n""#
        );
        assert_eq!(check_duplicates(&d.duplicates, FieldValidation::Warn).unwrap().len(), 2);
        assert!(check_duplicates(&d.duplicates, FieldValidation::Ignore).unwrap().is_empty());
    }

    #[test]
    fn yaml_infinity_is_an_error_not_a_null() {
        for text in ["spec:\n  replicas: .inf\n", "a: -.inf\n", "a: .nan\n"] {
            let e = parse_yaml(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("json: unsupported value"), "{text}: {e}");
        }
        assert_eq!(parse_yaml(b"a: 1.5\n").unwrap().value["a"], 1.5);
    }
}

//! The typed check: every body is decoded into its `k8s-openapi` type and encoded back.
//!
//! That gives kube-apiserver's decoding behaviour for free: wrong types are a 400 with the
//! decoder's message, quantities and int-or-strings are normalised, and fields the type
//! does not know are found by comparing the body with the round trip (the `fieldValidation`
//! query parameter decides whether they are an error, a warning, or silently dropped).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::resource::ResourceInfo;

/// The decoded-and-re-encoded object, and the unknown fields found (`spec.foo`).
pub struct Normalized {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Decodes `obj` as `T` and encodes it back: a kind's strategy names its instance
/// (`round_trip::<core::v1::Pod>`). Err: the decoder's message.
pub(crate) fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    serde_json::from_value::<T>(obj.clone())
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::to_value(t).map_err(|e| e.to_string()))
}

/// Decodes `obj` as the kind of `info` (whose `apiVersion`/`kind` the caller has set). Err:
/// the decoder's message.
pub fn normalize(info: &ResourceInfo, obj: &Value) -> Result<Normalized, String> {
    // A custom resource has no Rust type: its schema prunes what it does not specify.
    if let Some(custom) = info.custom {
        return Ok(custom.normalize(obj));
    }
    let typed = (info.strategy.decode)(obj)?;
    let mut unknown_fields = Vec::new();
    find_unknown("", obj, &typed, &mut unknown_fields);
    Ok(Normalized { object: typed, unknown_fields })
}

/// Keys present (non-null) in `sent` but absent from `typed`, as dotted paths.
fn find_unknown(path: &str, sent: &Value, typed: &Value, out: &mut Vec<String>) {
    match (sent, typed) {
        (Value::Object(s), Value::Object(t)) => {
            for (k, v) in s {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match t.get(k) {
                    Some(tv) => find_unknown(&child, v, tv, out),
                    // Empty values are dropped by the typed encoding, not unknown.
                    None if is_empty(v) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(s), Value::Array(t)) => {
            for (i, (sv, tv)) in s.iter().zip(t).enumerate() {
                find_unknown(&format!("{path}[{i}]"), sv, tv, out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_and_type_errors() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "bogus": 1,
                      "resources": {"limits": {"cpu": 1}}}], "nodeSelector": {"a": "b"}, "extra": null},
        });
        let pods = crate::resource::find("", "v1", "pods").unwrap();
        let n = normalize(pods, &pod).unwrap();
        assert_eq!(n.unknown_fields, vec!["spec.containers[0].bogus".to_string()]);
        // Numbers become quantity strings, as Kubernetes canonicalises them.
        assert_eq!(n.object["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert!(normalize(pods, &bad).is_err());
    }
}

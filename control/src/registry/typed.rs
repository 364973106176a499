//! The typed check: every body is decoded into its `k8s-openapi` type and encoded back.
//!
//! That gives kube-apiserver's decoding behaviour for free: wrong types are a 400 with the
//! decoder's message, quantities and int-or-strings are normalised, and fields the type
//! does not know are found by comparing the body with the round trip (the `fieldValidation`
//! query parameter decides whether they are an error, a warning, or silently dropped).

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core};
use serde_json::Value;

/// The decoded-and-re-encoded object, and the unknown fields found (`spec.foo`).
pub struct Normalized {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

macro_rules! round_trip {
    ($obj:expr, $t:ty) => {
        serde_json::from_value::<$t>($obj.clone())
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::to_value(t).map_err(|e| e.to_string()))
    };
}

/// Decodes `obj` as `kind` (whose `apiVersion`/`kind` the caller has set). Err: the
/// decoder's message.
pub fn normalize(kind: &str, obj: &Value) -> Result<Normalized, String> {
    let typed = match kind {
        "Namespace" => round_trip!(obj, core::v1::Namespace),
        "Node" => round_trip!(obj, core::v1::Node),
        "Pod" => round_trip!(obj, core::v1::Pod),
        "Service" => round_trip!(obj, core::v1::Service),
        "Endpoints" => round_trip!(obj, core::v1::Endpoints),
        "ConfigMap" => round_trip!(obj, core::v1::ConfigMap),
        "Secret" => round_trip!(obj, core::v1::Secret),
        "Event" => round_trip!(obj, core::v1::Event),
        "ServiceAccount" => round_trip!(obj, core::v1::ServiceAccount),
        "ResourceQuota" => round_trip!(obj, core::v1::ResourceQuota),
        "Deployment" => round_trip!(obj, apps::v1::Deployment),
        "ReplicaSet" => round_trip!(obj, apps::v1::ReplicaSet),
        "DaemonSet" => round_trip!(obj, apps::v1::DaemonSet),
        "StatefulSet" => round_trip!(obj, apps::v1::StatefulSet),
        "Job" => round_trip!(obj, batch::v1::Job),
        "CronJob" => round_trip!(obj, batch::v1::CronJob),
        "Lease" => round_trip!(obj, coordination::v1::Lease),
        "HorizontalPodAutoscaler" => round_trip!(obj, autoscaling::v2::HorizontalPodAutoscaler),
        other => return Err(format!("no type for kind {other}")),
    }?;
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
        let n = normalize("Pod", &pod).unwrap();
        assert_eq!(n.unknown_fields, vec!["spec.containers[0].bogus".to_string()]);
        // Numbers become quantity strings, as Kubernetes canonicalises them.
        assert_eq!(n.object["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert!(normalize("Pod", &bad).is_err());
    }
}

//! kube-apiserver's `ServiceAccount` admission plugin for new pods (pure): the pod runs as
//! `default` unless it names an account, and — unless the pod or its account opts out
//! with `automountServiceAccountToken: false` — gets the `kube-api-access-*` projected
//! volume (a bound token the agent keeps fresh, the cluster CA from the `kube-root-ca.crt`
//! ConfigMap, the namespace) mounted read-only in every container at [`MOUNT_PATH`],
//! where in-cluster clients (kube-rs, client-go, the Python client, kubectl) look.

use serde_json::{json, Value};

/// Where in-cluster clients find the token, `ca.crt` and `namespace`.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap every namespace holds with the cluster CA (`ca.crt`).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The token lifetime kubelet asks for (an hour and a few seconds, as Kubernetes).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const VOLUME_PREFIX: &str = "kube-api-access-";

/// The account `pod` runs as.
pub fn account_of(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or("default")
}

/// The projected volume named `name`.
pub fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]}},
            ],
        },
    })
}

/// Admits a new pod: sets its account and, unless it opts out (or `account_automount` —
/// the account's own `automountServiceAccountToken` — says false), adds the API-access
/// volume named with `suffix` and mounts it in every container.
pub fn admit_pod(pod: &mut Value, account_automount: Option<bool>, suffix: &str) {
    let account = account_of(pod).to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let automount = spec.get("automountServiceAccountToken").and_then(Value::as_bool).or(account_automount);
    if automount == Some(false) {
        return;
    }
    let mounted = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH)))
    };
    let already = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten())
        .any(mounted);
    if already {
        return;
    }
    let name = format!("{VOLUME_PREFIX}{suffix}");
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(api_access_volume(&name));
    }
    for key in ["initContainers", "containers"] {
        for container in spec.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(container) = container.as_object_mut() else { continue };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(mounts) = mounts.as_array_mut() {
                mounts.push(json!({"name": name, "mountPath": MOUNT_PATH, "readOnly": true}));
            }
        }
    }
}

/// A random 5-character suffix as Kubernetes' generated names use.
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }})
    }

    #[test]
    fn a_pod_runs_as_default_with_the_api_access_volume_in_every_container() {
        let mut p = pod();
        admit_pod(&mut p, None, "abcde");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["volumes"][1], api_access_volume("kube-api-access-abcde"));
        for c in ["initContainers", "containers"] {
            let mounts = p["spec"][c][0]["volumeMounts"].as_array().unwrap();
            let m = mounts.last().unwrap();
            assert_eq!(
                (m["name"].as_str(), m["mountPath"].as_str()),
                (Some("kube-api-access-abcde"), Some(MOUNT_PATH))
            );
            assert_eq!(m["readOnly"], true);
        }
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], "data");
    }

    #[test]
    fn the_pod_or_its_account_may_opt_out_and_an_existing_mount_is_kept() {
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        p["spec"]["serviceAccountName"] = json!("builder");
        admit_pod(&mut p, Some(true), "abcde");
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        let mut p = pod();
        admit_pod(&mut p, Some(false), "abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        // The pod says true: it wins over its account.
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        admit_pod(&mut p, Some(false), "abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 2);
        let mut p = pod();
        p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": MOUNT_PATH}]);
        admit_pod(&mut p, None, "abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(random_suffix().len(), 5);
    }
}

//! Registry credentials from a pod's `imagePullSecrets`, as the kubelet picks them (pure):
//! Secrets of type `kubernetes.io/dockerconfigjson` (`{"auths": {registry: {...}}}`) or the
//! legacy `kubernetes.io/dockercfg` (the `auths` map itself); the entry whose registry is
//! the image's — Docker's rules: the first path component is a registry when it has a dot
//! or a colon or is `localhost`, else the image is on Docker Hub — becomes the CRI
//! `AuthConfig` of the pull.

use berth_proto::cri::AuthConfig;
use serde_json::Value;

/// Docker Hub's names in registry configs.
const DOCKER_HUB: [&str; 4] = ["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

/// The registry of an image reference.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// The registry a config key names: `https://host/v1/` → `host`.
fn key_registry(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(a: &str, b: &str) -> bool {
    a == b || (DOCKER_HUB.contains(&a) && DOCKER_HUB.contains(&b))
}

/// The entries of one Secret's docker config, by its type and data (decoded bytes).
pub fn config_entries(secret_type: &str, data: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<Value, String> {
    let (key, nested) = match secret_type {
        "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", true),
        "kubernetes.io/dockercfg" => (".dockercfg", false),
        other => return Err(format!("secret type {other:?} is not a registry credential")),
    };
    let bytes = data.get(key).ok_or_else(|| format!("no {key} key"))?;
    let parsed: Value = serde_json::from_slice(bytes).map_err(|e| format!("{key}: {e}"))?;
    Ok(if nested { parsed.get("auths").cloned().unwrap_or(Value::Null) } else { parsed })
}

/// The credentials for `image` among `entries` (each a registry → credential map), first
/// match wins.
pub fn credentials_for(image: &str, entries: &[Value]) -> Option<AuthConfig> {
    let registry = registry_of(image);
    entries.iter().filter_map(Value::as_object).flat_map(|m| m.iter()).find_map(|(key, cred)| {
        if !same_registry(key_registry(key), &registry) {
            return None;
        }
        let text = |k: &str| cred.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        // containerd sends the credentials only to the host of `server_address`, which it
        // parses as a URL (a bare `host:port` does not parse). Docker Hub's pull host is
        // not the name in configs, so its credentials carry no address.
        let server_address =
            if DOCKER_HUB.contains(&registry.as_str()) { String::new() } else { format!("https://{registry}") };
        Some(AuthConfig {
            username: text("username"),
            password: text("password"),
            auth: text("auth"),
            server_address,
            identity_token: text("identitytoken"),
            registry_token: text("registrytoken"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_follow_dockers_rules() {
        assert_eq!(registry_of("nginx:1.7.9"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/berth/http:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("registry.k8s.io/pause:3.10"), "registry.k8s.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn the_entry_of_the_images_registry_is_used() {
        let data = std::collections::BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            br#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnB3"}, "127.0.0.1:5000": {"username": "u", "password": "p"}}}"#.to_vec(),
        )]);
        let entries = vec![config_entries("kubernetes.io/dockerconfigjson", &data).unwrap()];
        let local = credentials_for("127.0.0.1:5000/berth/http:v1", &entries).unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str(), local.server_address.as_str()),
            ("u", "p", "https://127.0.0.1:5000")
        );
        assert_eq!(credentials_for("nginx", &entries).unwrap().auth, "aHViOnB3");
        assert!(credentials_for("quay.io/x", &entries).is_none());
        let legacy = std::collections::BTreeMap::from([(
            ".dockercfg".to_string(),
            br#"{"quay.io": {"auth": "eA=="}}"#.to_vec(),
        )]);
        let entries = vec![config_entries("kubernetes.io/dockercfg", &legacy).unwrap()];
        assert_eq!(credentials_for("quay.io/x", &entries).unwrap().auth, "eA==");
        assert!(config_entries("Opaque", &legacy).unwrap_err().contains("not a registry credential"));
    }
}

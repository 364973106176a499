//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`: an
//! `apiserver.config.k8s.io/v1` `EncryptionConfiguration` names, per resource, an ordered
//! list of providers. Writes use the first; reads pick the provider (and key) by the
//! stored value's prefix — `k8s:enc:aesgcm:v1:<key name>:` then a 12-byte nonce and the
//! AES-GCM sealed object, authenticated with the storage key as kube-apiserver does — and
//! `identity` (no prefix) reads plain JSON. So etcdctl and snapshots see ciphertext, and
//! keys rotate the Kubernetes way: add the new key second, then first, rewrite, remove the
//! old.
//!
//! [`Transformer::watch_file`] reloads the file when it changes (kube-apiserver's
//! `--encryption-provider-config-automatic-reload`), keeping the last good configuration
//! when a new one does not parse, so a rotation needs no restart at all.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The file a server reads when `--encryption-provider-config` is not given, in its data
/// dir (made, with a fresh key for Secrets, by the first server of a new cluster).
pub use berth_proto::pki::ENCRYPTION_CONFIG as DEFAULT_CONFIG;
pub use berth_proto::pki::{encryption_config as config_with_keys, new_encryption_config as generated_config};
/// How often a watched configuration file is looked at.
const RELOAD_EVERY: Duration = Duration::from_secs(5);
const PREFIX: &str = "k8s:enc:";

/// The configuration file's shape (kube-apiserver's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncryptionConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    identity: Option<serde_json::Value>,
    aesgcm: Option<KeysConfig>,
    aescbc: Option<serde_json::Value>,
    secretbox: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// One provider of a resource's list.
enum Provider {
    Identity,
    AesGcm(Vec<(String, LessSafeKey)>),
}

/// The providers of the resources a rule names.
struct Rule {
    /// `secrets`, `deployments.apps`, `*.apps`, `*.` (every core resource), `*.*`.
    resources: Vec<String>,
    providers: Vec<Provider>,
}

/// Turns objects into stored values and back, per storage key.
pub struct Transformer {
    rules: RwLock<Arc<Vec<Rule>>>,
    random: SystemRandom,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transformer { .. }")
    }
}

impl Transformer {
    /// Everything stored as plain JSON (no configuration).
    pub fn identity() -> Arc<Transformer> {
        Arc::new(Transformer { rules: RwLock::new(Arc::new(vec![])), random: SystemRandom::new() })
    }

    /// The configuration in `yaml`; errors name the field at fault.
    pub fn parse(yaml: &str) -> Result<Arc<Transformer>, String> {
        Ok(Arc::new(Transformer { rules: RwLock::new(Arc::new(parse_rules(yaml)?)), random: SystemRandom::new() }))
    }

    /// The configuration in the file at `path`.
    pub fn load(path: &Path) -> Result<Arc<Transformer>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Transformer::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The stored form of `plain` (an object's JSON) under `key`.
    pub fn to_storage(&self, key: &str, plain: Vec<u8>) -> Result<Vec<u8>, String> {
        let rules = self.rules();
        let Some(first) = providers_for(&rules, key).and_then(|p| p.first()) else { return Ok(plain) };
        match first {
            Provider::Identity => Ok(plain),
            Provider::AesGcm(keys) => {
                let (name, sealing) = keys.first().expect("a provider has keys");
                let mut nonce = [0u8; NONCE_LEN];
                self.random.fill(&mut nonce).map_err(|_| "no randomness for a nonce".to_string())?;
                let mut sealed = plain;
                sealing
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut sealed,
                    )
                    .map_err(|_| format!("encrypting {key}"))?;
                let mut out = format!("{PREFIX}aesgcm:v1:{name}:").into_bytes();
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }

    /// The object JSON stored under `key` as `stored`.
    pub fn from_storage<'a>(&self, key: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        let rules = self.rules();
        let providers = providers_for(&rules, key);
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            // Plain JSON: readable unless the resource's list leaves out `identity`
            // (kube-apiserver: no provider matches the value's prefix).
            return match providers {
                Some(list) if !list.iter().any(|p| matches!(p, Provider::Identity)) => {
                    Err(format!("{key} is stored unencrypted, and identity is not among its providers"))
                }
                _ => Ok(Cow::Borrowed(stored)),
            };
        };
        let (kind, rest) = split_field(rest).ok_or_else(|| format!("{key}: a malformed encryption prefix"))?;
        let (version, rest) = split_field(rest).ok_or_else(|| format!("{key}: a malformed encryption prefix"))?;
        let (name, data) = split_field(rest).ok_or_else(|| format!("{key}: a malformed encryption prefix"))?;
        let name = String::from_utf8_lossy(name);
        if kind != b"aesgcm" || version != b"v1" {
            return Err(format!(
                "{key} is encrypted with k8s:enc:{}:{}, which this server does not have",
                String::from_utf8_lossy(kind),
                String::from_utf8_lossy(version)
            ));
        }
        let opening = providers
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                Provider::AesGcm(keys) => keys.iter().find(|(n, _)| *n == name).map(|(_, k)| k),
                Provider::Identity => None,
            })
            .next()
            .ok_or_else(|| {
                format!("{key} is encrypted with aesgcm key {name:?}, which the encryption configuration no longer has")
            })?;
        if data.len() < NONCE_LEN {
            return Err(format!("{key}: the encrypted value is truncated"));
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("{key}: a bad nonce"))?;
        let mut buffer = sealed.to_vec();
        let plain = opening
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buffer)
            .map_err(|_| format!("{key} does not decrypt with aesgcm key {name:?} (wrong key or tampered value)"))?;
        Ok(Cow::Owned(plain.to_vec()))
    }

    /// Reloads `path` whenever its contents change, until `shutdown`; a file that does not
    /// parse is logged and the configuration in use kept.
    pub async fn watch_file(self: Arc<Self>, path: PathBuf, shutdown: CancellationToken) {
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let Ok(now) = std::fs::read(&path) else { continue };
            if last.as_ref() == Some(&now) {
                continue;
            }
            last = Some(now.clone());
            match parse_rules(&String::from_utf8_lossy(&now)) {
                Ok(rules) => {
                    *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
                    tracing::info!(path = %path.display(), "reloaded the encryption configuration");
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "keeping the encryption configuration in use")
                }
            }
        }
    }
}

fn split_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == b':')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// The providers for the object stored under `key` (`/registry/<resource>/…`): the first
/// rule naming its resource.
fn providers_for<'r>(rules: &'r [Rule], key: &str) -> Option<&'r [Provider]> {
    let plural = key.strip_prefix("/registry/")?.split('/').next()?;
    let group = crate::resource::RESOURCES.iter().find(|r| r.storage().plural == plural).map(|r| r.group).unwrap_or("");
    let exact = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
    rules
        .iter()
        .find(|r| {
            r.resources
                .iter()
                .any(|name| *name == exact || *name == "*.*" || name.strip_prefix("*.").is_some_and(|g| g == group))
        })
        .map(|r| r.providers.as_slice())
}

fn parse_rules(yaml: &str) -> Result<Vec<Rule>, String> {
    let config: EncryptionConfiguration =
        serde_yaml::from_str(yaml).map_err(|e| format!("not an EncryptionConfiguration: {e}"))?;
    if config.kind != "EncryptionConfiguration" || config.api_version != "apiserver.config.k8s.io/v1" {
        return Err(format!(
            "apiVersion/kind must be apiserver.config.k8s.io/v1 EncryptionConfiguration, not {}/{}",
            config.api_version, config.kind
        ));
    }
    let mut rules = Vec::new();
    for (i, resource) in config.resources.iter().enumerate() {
        let at = |field: &str| format!("resources[{i}].{field}");
        if resource.resources.is_empty() {
            return Err(format!("{}: name at least one resource", at("resources")));
        }
        if resource.providers.is_empty() {
            return Err(format!("{}: name at least one provider", at("providers")));
        }
        let mut providers = Vec::new();
        for (j, p) in resource.providers.iter().enumerate() {
            providers.push(provider(p).map_err(|e| format!("{}: {e}", at(&format!("providers[{j}]"))))?);
        }
        rules.push(Rule { resources: resource.resources.iter().map(|r| r.trim().to_string()).collect(), providers });
    }
    Ok(rules)
}

fn provider(p: &ProviderConfig) -> Result<Provider, String> {
    let set = [p.identity.is_some(), p.aesgcm.is_some(), p.aescbc.is_some(), p.secretbox.is_some(), p.kms.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err("give exactly one of identity, aesgcm, aescbc, secretbox, kms".into());
    }
    if p.identity.is_some() {
        return Ok(Provider::Identity);
    }
    let Some(aesgcm) = &p.aesgcm else {
        return Err("only the aesgcm and identity providers are supported (aescbc, secretbox and kms are not)".into());
    };
    if aesgcm.keys.is_empty() {
        return Err("aesgcm.keys: name at least one key".into());
    }
    let mut keys = Vec::new();
    for (k, key) in aesgcm.keys.iter().enumerate() {
        let at = format!("aesgcm.keys[{k}]");
        if key.name.is_empty() || key.name.contains(':') {
            return Err(format!("{at}.name: {:?} must be non-empty without ':'", key.name));
        }
        if keys.iter().any(|(n, _)| *n == key.name) {
            return Err(format!("{at}.name: {:?} is given twice", key.name));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.secret.trim())
            .map_err(|e| format!("{at}.secret: not base64: {e}"))?;
        let algorithm = match bytes.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => return Err(format!("{at}.secret: {n} bytes; an AES-GCM key here is 16 or 32 bytes")),
        };
        let unbound = UnboundKey::new(algorithm, &bytes).map_err(|_| format!("{at}.secret: not a usable key"))?;
        keys.push((key.name.clone(), LessSafeKey::new(unbound)));
    }
    Ok(Provider::AesGcm(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [7; 32];
    const KEY_B: [u8; 32] = [9; 32];

    #[test]
    fn secrets_are_sealed_and_bound_to_their_key_other_resources_stay_plain() {
        let t = Transformer::parse(&config_with_keys(&[("key1", &KEY_A)])).unwrap();
        let plain = br#"{"data":{"password":"aHVudGVyMg=="}}"#.to_vec();
        let key = "/registry/secrets/default/db";
        let stored = t.to_storage(key, plain.clone()).unwrap();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{}", String::from_utf8_lossy(&stored));
        assert!(!stored.windows(8).any(|w| w == b"aHVudGVy"), "no plaintext");
        assert_ne!(t.to_storage(key, plain.clone()).unwrap(), stored, "a fresh nonce every time");
        assert_eq!(t.from_storage(key, &stored).unwrap().as_ref(), plain.as_slice());
        // Moved to another key (another object's value): refused, not decrypted.
        let err = t.from_storage("/registry/secrets/default/other", &stored).unwrap_err();
        assert!(err.contains("does not decrypt"), "{err}");
        let mut tampered = stored.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(t.from_storage(key, &tampered).is_err());
        // Plain values written before encryption are still read (identity is listed).
        assert_eq!(t.from_storage(key, &plain).unwrap().as_ref(), plain.as_slice());
        let cm = "/registry/configmaps/default/c";
        assert_eq!(t.to_storage(cm, plain.clone()).unwrap(), plain);
    }

    #[test]
    fn rotation_reads_old_keys_writes_the_first_and_names_a_missing_one() {
        let old = Transformer::parse(&config_with_keys(&[("key1", &KEY_A)])).unwrap();
        let key = "/registry/secrets/ns/s";
        let by_key1 = old.to_storage(key, b"{}".to_vec()).unwrap();
        let both = Transformer::parse(&config_with_keys(&[("key2", &KEY_B), ("key1", &KEY_A)])).unwrap();
        assert_eq!(both.from_storage(key, &by_key1).unwrap().as_ref(), b"{}");
        let by_key2 = both.to_storage(key, b"{}".to_vec()).unwrap();
        assert!(by_key2.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        let only_new = Transformer::parse(&config_with_keys(&[("key2", &KEY_B)])).unwrap();
        let err = only_new.from_storage(key, &by_key1).unwrap_err();
        assert!(err.contains("aesgcm key \"key1\", which the encryption configuration no longer has"), "{err}");
        // Without `identity` plain values are refused.
        let strict = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]\n";
        let err = Transformer::parse(strict).unwrap().from_storage(key, b"{}").unwrap_err();
        assert!(err.contains("identity is not among its providers"), "{err}");
    }

    #[test]
    fn resources_match_by_group_and_wildcards() {
        let config = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [deployments.apps, '*.batch']\n  providers:\n  - aesgcm:\n      keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]\n  - identity: {}\n";
        let t = Transformer::parse(config).unwrap();
        let sealed = |key: &str| t.to_storage(key, b"{}".to_vec()).unwrap().starts_with(b"k8s:enc:");
        assert!(sealed("/registry/deployments/default/web"));
        assert!(sealed("/registry/jobs/default/j"));
        assert!(!sealed("/registry/secrets/default/s"));
        assert!(!sealed("/registry/statefulsets/default/s"));
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n";
        for (providers, want) in [
            ("  - aesgcm:\n      keys: [{name: k, secret: 'not base64!'}]\n", "resources[0].providers[0]: aesgcm.keys[0].secret: not base64"),
            ("  - aesgcm:\n      keys: [{name: k, secret: AAAA}]\n", "aesgcm.keys[0].secret: 3 bytes"),
            ("  - aescbc:\n      keys: []\n", "only the aesgcm and identity providers"),
            ("  - {}\n", "exactly one of"),
            ("  - aesgcm:\n      keys: []\n", "aesgcm.keys: name at least one key"),
            ("  - aesgcm:\n      keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}, {name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]\n", "given twice"),
        ] {
            let err = Transformer::parse(&format!("{head}{providers}")).unwrap_err();
            assert!(err.contains(want), "{providers}: {err}");
        }
        let err = Transformer::parse("kind: Pod\napiVersion: v1\n").unwrap_err();
        assert!(err.contains("apiserver.config.k8s.io/v1 EncryptionConfiguration"), "{err}");
        assert!(Transformer::parse(&generated_config().unwrap()).is_ok());
    }
}

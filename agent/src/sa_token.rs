//! Projected service-account tokens, as kubelet's token manager keeps them: a pod's
//! `serviceAccountToken` source is a TokenRequest for the pod's account, bound to the pod
//! (so the token dies with it), for the source's audience and lifetime. Tokens are cached
//! per pod and source and asked for again once 80% of their lifetime has passed or they
//! are a day old ([`needs_refresh`]), so the periodic volume refresh rewrites the file
//! with a fresh token long before the old one expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

use crate::node::ApiAccess;

/// kubelet's default when a source names no lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    pod_uid: String,
    audience: String,
    expiration_seconds: i64,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

/// The tokens the agent holds for its pods.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<Key, Cached>>,
}

/// Whether a token issued at `issued` and expiring at `expires` should be replaced at
/// `now` (pure; kubelet's `requiresRefresh`).
pub fn needs_refresh(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    now >= expires || age >= lifetime.mul_f64(0.8) || age >= MAX_AGE
}

impl TokenCache {
    /// The token of `source` for `pod`, from the cache or asked for.
    pub async fn token(
        &self,
        api: &ApiAccess,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let account =
            pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
        let key = Key {
            pod_uid: uid.clone(),
            audience: source.audience.clone().unwrap_or_default(),
            expiration_seconds: source.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        };
        let now = SystemTime::now();
        if let Some(c) = self.entries.lock().expect("token cache").get(&key) {
            if !needs_refresh(c.issued, c.expires, now) {
                return Ok(c.token.clone());
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audience.is_empty().then(Vec::new).unwrap_or_else(|| vec![key.audience.clone()]),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    uid: Some(uid),
                }),
            },
            ..Default::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(api.client.clone(), ns);
        let answer = tokio::time::timeout(
            api.timeout,
            accounts.create_token_request(&account, &PostParams::default(), &request),
        )
        .await
        .map_err(|_| format!("requesting a token for service account {ns}/{account}: timed out"))?
        .map_err(|e| format!("requesting a token for service account {ns}/{account}: {e}"))?;
        let status = answer.status.ok_or("the TokenRequest was answered without a token")?;
        let expires = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(status.expiration_timestamp.0.as_second()).unwrap_or_default());
        let mut entries = self.entries.lock().expect("token cache");
        entries.retain(|_, c| c.expires > now);
        entries.insert(key, Cached { token: status.token.clone(), issued: now, expires });
        tracing::debug!(pod = %name, namespace = ns, %account, "service-account token issued");
        Ok(status.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_80_percent_of_their_life_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(!needs_refresh(t0, t0 + hour, t0 + hour.mul_f64(0.79)));
        assert!(needs_refresh(t0, t0 + hour, t0 + hour.mul_f64(0.8)));
        assert!(needs_refresh(t0, t0 + hour, t0 + hour * 2));
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(!needs_refresh(t0, t0 + year, t0 + Duration::from_secs(23 * 3600)));
        assert!(needs_refresh(t0, t0 + year, t0 + Duration::from_secs(24 * 3600)));
    }
}

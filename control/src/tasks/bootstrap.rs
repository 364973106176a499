//! The leader's part of joining nodes with bootstrap tokens (kube-controller-manager's
//! `csrapproving`, `csrsigning`, `bootstrapsigner` and `tokencleaner`):
//!
//! * node client CertificateSigningRequests are approved or denied as
//!   [`crate::bootstrap::csr_verdict`] says, and approved client requests are signed by the
//!   cluster CA;
//! * `kube-public/cluster-info` holds the servers and the CA, signed with every bootstrap
//!   token (`jws-kubeconfig-<id>`), and anyone may read it (kubeadm's Role and RoleBinding
//!   for `system:anonymous`);
//! * expired tokens' Secrets are deleted;
//! * `kube-system/berth-control-plane-pki` holds the CAs and keys a server joining with a
//!   control-plane token fetches, readable by those tokens only.
//!
//! A sweep every second; everything it writes is idempotent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use berth_proto::bootstrap_token as bt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::bootstrap::{csr_verdict, has_condition, CsrVerdict, CLIENT_SIGNER, KUBELET_CLIENT_SIGNER};
use crate::periodic::Every;
use crate::tasks::context::TaskContext;

const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Kubernetes' floor for a request's `spec.expirationSeconds`.
const MIN_REQUESTED_LIFE: Duration = Duration::from_secs(600);

/// How long a certificate signed for a request asking `expiration_seconds` lives: the
/// request may shorten `max_life` (`--cluster-signing-duration`) to no less than ten
/// minutes, never lengthen it (kube-controller-manager's signer).
fn certificate_life(expiration_seconds: Option<i32>, max_life: Duration) -> Duration {
    match expiration_seconds {
        Some(seconds) => Duration::from_secs(seconds.max(0) as u64).max(MIN_REQUESTED_LIFE).min(max_life),
        None => max_life,
    }
}
const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";

/// The `cluster-info` data for `servers`, the CA and the signing tokens (pure).
pub fn cluster_info_data(servers: &[String], ca_pem: &str, tokens: &[bt::Token]) -> BTreeMap<String, String> {
    let kubeconfig = berth_proto::kubeconfig::cluster_info_kubeconfig_yaml(servers, ca_pem);
    let mut data = BTreeMap::new();
    for token in tokens {
        data.insert(format!("{}{}", bt::JWS_PREFIX, token.id), bt::detached_jws(&kubeconfig, token));
    }
    data.insert("kubeconfig".into(), kubeconfig);
    data
}

/// The tokens of `secrets` that sign `cluster-info`: well-formed, not expired, with
/// `usage-bootstrap-signing`.
fn signing_tokens(secrets: &[Value], now: chrono::DateTime<chrono::Utc>) -> Vec<bt::Token> {
    secrets
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(bt::SECRET_TYPE))
        .filter(|s| !crate::bootstrap::is_expired(s, now))
        .filter(|s| crate::bootstrap::secret_value(s, "usage-bootstrap-signing").as_deref() == Some("true"))
        .filter_map(|s| {
            let id = crate::bootstrap::secret_value(s, "token-id")?;
            let secret = crate::bootstrap::secret_value(s, "token-secret")?;
            bt::Token::parse(&format!("{id}.{secret}"))
        })
        .collect()
}

/// What the sweep needs from the task's context.
struct Bootstrap {
    client: kube::Client,
    ca: berth_proto::pki::Ca,
    /// `--cluster-signing-duration`.
    max_life: Duration,
    /// What servers joining with a control-plane token fetch.
    control_plane: Option<BTreeMap<String, String>>,
}

impl Bootstrap {
    async fn decide_and_sign(&self) -> Result<(), kube::Error> {
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        for csr in api.list(&ListParams::default()).await?.items {
            let name = csr.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(&csr).unwrap_or_default();
            match csr_verdict(&value) {
                CsrVerdict::Leave => {}
                CsrVerdict::Approve(reason, message) => {
                    self.condition(&api, &name, &value, "Approved", reason, &message).await?;
                    tracing::info!(csr = %name, %message, "approved a certificate signing request");
                    continue; // signed on the next sweep, from the stored approval
                }
                CsrVerdict::Deny(reason, message) => {
                    self.condition(&api, &name, &value, "Denied", reason, &message).await?;
                    tracing::info!(csr = %name, %message, "denied a certificate signing request");
                    continue;
                }
            }
            let signer = csr.spec.signer_name.as_str();
            let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
            if (signer == KUBELET_CLIENT_SIGNER || signer == CLIENT_SIGNER)
                && has_condition(&value, "Approved")
                && !has_condition(&value, "Denied")
                && !has_condition(&value, "Failed")
                && !issued
            {
                let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
                let signed =
                    self.ca.sign_client_csr(&pem, certificate_life(csr.spec.expiration_seconds, self.max_life));
                let status = match signed {
                    Ok(cert) => {
                        json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(cert)}})
                    }
                    Err(e) => {
                        json!({"status": {"conditions": conditions_with(&value, "Failed", "SignerValidationFailure", &e.to_string())}})
                    }
                };
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                tracing::info!(csr = %name, signer, "signed a certificate signing request");
            }
        }
        Ok(())
    }

    async fn condition(
        &self,
        api: &Api<CertificateSigningRequest>,
        name: &str,
        csr: &Value,
        ty: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let patch = json!({"status": {"conditions": conditions_with(csr, ty, reason, message)}});
        api.patch_approval(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }

    /// Publishes cluster-info (and its anonymous read access) and deletes expired tokens.
    async fn publish_and_clean(&self, servers: &[String]) -> Result<(), kube::Error> {
        let secrets_api: Api<Secret> = Api::namespaced(self.client.clone(), bt::NAMESPACE);
        let secrets: Vec<Value> = secrets_api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some(bt::SECRET_TYPE))
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect();
        let now = chrono::Utc::now();
        for expired in secrets.iter().filter(|s| crate::bootstrap::is_expired(s, now)) {
            let name = expired.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            match secrets_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(secret = name, "deleted an expired bootstrap token"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if servers.is_empty() {
            return Ok(());
        }
        let data = cluster_info_data(servers, &self.ca.issued.cert_pem, &signing_tokens(&secrets, now));
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), bt::CLUSTER_INFO_NAMESPACE);
        match config_maps.get_opt(bt::CLUSTER_INFO).await? {
            Some(current) if current.data.as_ref() == Some(&data) => {}
            Some(current) => {
                // One merge patch: the wanted entries, and null for any other (a deleted
                // token's signature), so readers never see a half-written document.
                let mut patch: serde_json::Map<String, Value> =
                    current.data.unwrap_or_default().into_keys().map(|k| (k, Value::Null)).collect();
                patch.extend(data.into_iter().map(|(k, v)| (k, Value::String(v))));
                let patch = json!({"data": patch});
                config_maps.patch(bt::CLUSTER_INFO, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            None => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": bt::CLUSTER_INFO, "namespace": bt::CLUSTER_INFO_NAMESPACE},
                    "data": data,
                }))
                .expect("a valid ConfigMap");
                ignore_conflict(config_maps.create(&PostParams::default(), &cm).await)?;
                self.allow_anonymous_reads().await?;
            }
        }
        Ok(())
    }

    /// Keeps the Secret joining servers fetch, and lets control-plane tokens (only) read it.
    async fn publish_control_plane_secrets(&self) -> Result<(), kube::Error> {
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let Some(files) = &self.control_plane else { return Ok(()) };
        let ns = bt::NAMESPACE;
        let name = berth_proto::pki::CONTROL_PLANE_SECRET;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let wanted: BTreeMap<String, k8s_openapi::ByteString> =
            files.iter().map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone().into_bytes()))).collect();
        match secrets.get_opt(name).await? {
            Some(current) if current.data.as_ref() == Some(&wanted) => return Ok(()),
            Some(_) => {
                let patch = json!({"data": wanted});
                secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            None => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
                    data: Some(wanted),
                    type_: Some("Opaque".into()),
                    ..Default::default()
                };
                ignore_conflict(secrets.create(&PostParams::default(), &secret).await)?;
            }
        }
        let role_name = "berth:control-plane-join";
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": role_name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]}],
        }))
        .expect("a valid Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": role_name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": bt::CONTROL_PLANE_GROUP}],
        }))
        .expect("a valid RoleBinding");
        ignore_conflict(Api::<Role>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &role).await)?;
        ignore_conflict(
            Api::<RoleBinding>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &binding).await,
        )?;
        tracing::info!(secret = name, "published what joining servers fetch");
        Ok(())
    }

    /// kubeadm's Role and RoleBinding letting anyone read cluster-info.
    async fn allow_anonymous_reads(&self) -> Result<(), kube::Error> {
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let ns = bt::CLUSTER_INFO_NAMESPACE;
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": CLUSTER_INFO_ROLE, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [bt::CLUSTER_INFO], "verbs": ["get"]}],
        }))
        .expect("a valid Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": CLUSTER_INFO_ROLE, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CLUSTER_INFO_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}],
        }))
        .expect("a valid RoleBinding");
        ignore_conflict(Api::<Role>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &role).await)?;
        ignore_conflict(
            Api::<RoleBinding>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &binding).await,
        )?;
        Ok(())
    }
}

fn ignore_conflict<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(drop),
    }
}

/// `csr`'s conditions plus a new one of `ty`.
fn conditions_with(csr: &Value, ty: &str, reason: &str, message: &str) -> Vec<Value> {
    let mut conditions = csr.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    conditions.push(json!({
        "type": ty, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now,
    }));
    conditions
}

/// Runs the sweep until `cancel` (only with a cluster CA: `--insecure` servers have none).
pub async fn run(ctx: TaskContext, cancel: CancellationToken) {
    let Some(ca) = ctx.settings.cluster_ca.clone() else { return };
    let leases = ctx.informers.store::<Lease>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = ctx.informers.wait_synced() => {}
    }
    let control_plane = ctx.settings.control_plane_secrets.clone();
    let max_life = ctx.settings.cluster_signing_duration;
    let bootstrap = Arc::new(Bootstrap { client: ctx.client.clone(), ca, control_plane, max_life });
    let mut every = Every::new(SWEEP_EVERY, cancel);
    while every.tick().await {
        let mut servers = super::kubernetes_service::fresh_servers(&leases);
        servers.sort();
        if let Err(e) = bootstrap.decide_and_sign().await {
            tracing::debug!(error = %e, "certificate signing requests: sweep failed");
        }
        if let Err(e) = bootstrap.publish_and_clean(&servers).await {
            tracing::debug!(error = %e, "cluster-info and bootstrap tokens: sweep failed");
        }
        if let Err(e) = bootstrap.publish_control_plane_secrets().await {
            tracing::debug!(error = %e, "the control plane's secrets: sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_may_shorten_the_certificate_life_down_to_ten_minutes_but_never_lengthen_it() {
        let year = Duration::from_secs(365 * 86400);
        assert_eq!(certificate_life(None, year), year);
        assert_eq!(certificate_life(Some(3600), year), Duration::from_secs(3600));
        assert_eq!(certificate_life(Some(60), year), Duration::from_secs(600));
        assert_eq!(certificate_life(Some(i32::MAX), year), year);
        assert_eq!(certificate_life(Some(3600), Duration::from_secs(30)), Duration::from_secs(30));
    }

    #[test]
    fn cluster_info_is_signed_by_every_signing_token_only() {
        let token = bt::Token::parse("abcdef.0123456789abcdef").unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = |token: &bt::Token, signing: &str, expiration: Option<&str>| {
            let mut data = serde_json::Map::new();
            for (k, v) in bt::secret_data(token, expiration, &[], "") {
                data.insert(k, json!(b64(&v)));
            }
            data.insert("usage-bootstrap-signing".into(), json!(b64(signing)));
            json!({"type": bt::SECRET_TYPE, "data": data})
        };
        let other = bt::Token::generate();
        let old = bt::Token::generate();
        let secrets = vec![
            secret(&token, "true", None),
            secret(&other, "false", None),
            secret(&old, "true", Some("2020-01-01T00:00:00Z")),
        ];
        let tokens = signing_tokens(&secrets, chrono::Utc::now());
        assert_eq!(tokens, vec![token.clone()]);
        let data = cluster_info_data(&["https://10.0.0.1:6443".into()], "CA PEM", &tokens);
        let kubeconfig = &data["kubeconfig"];
        assert!(bt::verify_detached_jws(kubeconfig, &token, &data["jws-kubeconfig-abcdef"]));
        let (servers, ca) = berth_proto::kubeconfig::read_cluster_info(kubeconfig).unwrap();
        assert_eq!((servers, ca.as_str()), (vec!["https://10.0.0.1:6443".to_string()], "CA PEM"));
    }
}

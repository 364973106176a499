//! Joining with a bootstrap token, the server's side (kubeadm's TLS bootstrap):
//!
//! * [`authenticate`]: a bearer `<id>.<secret>` is `system:bootstrap:<id>` in
//!   `system:bootstrappers` (plus the Secret's `auth-extra-groups`) while its Secret
//!   `kube-system/bootstrap-token-<id>` exists, matches, allows authentication and has not
//!   expired;
//! * [`csr_verdict`]: which CertificateSigningRequests the leader approves on its own — a
//!   node client certificate (`system:node:<name>` in `system:nodes`, client auth) asked
//!   for by a bootstrap token, or by that node itself renewing — and which it denies
//!   (a node asking for another node's name);
//! * the leader task `crate::tasks::bootstrap` signs approved requests, publishes
//!   `kube-public/cluster-info` signed with every token and deletes expired tokens.

use base64::Engine;
use berth_proto::bootstrap_token::{self as bt, Token};
use serde_json::Value;

use crate::api::authn::UserInfo;

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of other client certificates (approved by an administrator).
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// A value of a Secret's `data` (base64), decoded.
pub fn secret_value(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.pointer(&format!("/data/{key}")).and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok())
}

/// When a token's Secret expires, if it does (its `expiration`, RFC 3339).
pub fn expiration(secret: &Value) -> Option<Result<chrono::DateTime<chrono::Utc>, String>> {
    let text = secret_value(secret, "expiration")?;
    Some(
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("expiration {text:?}: {e}")),
    )
}

/// Whether a token's Secret is expired at `now` (an unreadable expiration counts as expired).
pub fn is_expired(secret: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    matches!(expiration(secret), Some(Err(_))) || matches!(expiration(secret), Some(Ok(t)) if t <= now)
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ (a
/// token's secret must not be guessable byte by byte from response times).
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user `token` authenticates as, given its Secret as found (kube's bootstrap token
/// authenticator). `Err` says why not, for the log.
pub fn authenticate(
    token: &Token,
    secret: Option<&Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<UserInfo, String> {
    let name = token.secret_name();
    let secret = secret.ok_or_else(|| format!("bootstrap token: no secret {}/{name}", bt::NAMESPACE))?;
    if secret.get("type").and_then(Value::as_str) != Some(bt::SECRET_TYPE) {
        return Err(format!("bootstrap token: secret {name} is not of type {}", bt::SECRET_TYPE));
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(format!("bootstrap token: secret {name} is being deleted"));
    }
    let stored = secret_value(secret, "token-secret").unwrap_or_default();
    if !equal_in_constant_time(stored.as_bytes(), token.secret.as_bytes()) {
        return Err(format!("bootstrap token: the secret of token {} does not match", token.id));
    }
    if secret_value(secret, "token-id").as_deref() != Some(token.id.as_str()) {
        return Err(format!("bootstrap token: secret {name} holds another token id"));
    }
    if secret_value(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(format!("bootstrap token: token {} may not be used for authentication", token.id));
    }
    if is_expired(secret, now) {
        return Err(format!("bootstrap token: token {} has expired", token.id));
    }
    let mut groups = vec![bt::GROUP.to_string()];
    for group in secret_value(secret, "auth-extra-groups").unwrap_or_default().split(',').map(str::trim) {
        if group.is_empty() {
            continue;
        }
        if !group.starts_with("system:bootstrappers:") {
            return Err(format!("bootstrap token: extra group {group:?} is not under system:bootstrappers:"));
        }
        groups.push(group.to_string());
    }
    Ok(UserInfo::authenticated(&token.username(), &groups))
}

/// What the leader does with a CertificateSigningRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrVerdict {
    /// Approve it (reason, message).
    Approve(&'static str, String),
    /// Deny it (reason, message).
    Deny(&'static str, String),
    /// Leave it to an administrator (`kubectl certificate approve`).
    Leave,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether a request has a condition of `ty` (Approved, Denied, Failed).
pub fn has_condition(csr: &Value, ty: &str) -> bool {
    csr.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c["type"] == ty))
}

/// The leader's verdict on `csr` (pure; kube-controller-manager's `csrapproving`, with
/// a request for another node's name denied outright rather than left pending).
pub fn csr_verdict(csr: &Value) -> CsrVerdict {
    if has_condition(csr, "Approved") || has_condition(csr, "Denied") {
        return CsrVerdict::Leave;
    }
    let spec = csr.get("spec").unwrap_or(&Value::Null);
    if spec.get("signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER) {
        return CsrVerdict::Leave;
    }
    let requestor = spec.get("username").and_then(Value::as_str).unwrap_or("");
    let groups = strings(spec.get("groups"));
    let subject = spec
        .get("request")
        .and_then(Value::as_str)
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| berth_proto::pki::csr_subject(&pem).ok());
    let Some(subject) = subject else {
        return CsrVerdict::Deny("InvalidRequest", "spec.request is not a certificate signing request".into());
    };
    let Some(node) = subject.common_name.strip_prefix("system:node:").filter(|n| !n.is_empty()) else {
        return CsrVerdict::Deny(
            "InvalidNodeClientRequest",
            format!("the subject's common name {:?} is not system:node:<name>", subject.common_name),
        );
    };
    if subject.organizations != ["system:nodes"] {
        return CsrVerdict::Deny(
            "InvalidNodeClientRequest",
            format!("the subject's organizations {:?} are not exactly [system:nodes]", subject.organizations),
        );
    }
    let usages = strings(spec.get("usages"));
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !usages.iter().any(|u| u == "client auth") || usages.iter().any(|u| !allowed.contains(&u.as_str())) {
        return CsrVerdict::Deny(
            "InvalidNodeClientRequest",
            format!("usages {usages:?} must be client auth with digital signature or key encipherment"),
        );
    }
    if groups.iter().any(|g| g == bt::GROUP) {
        return CsrVerdict::Approve(
            "AutoApproved",
            format!("Auto approving kubelet client certificate for node {node} after a bootstrap token authenticated."),
        );
    }
    if requestor.strip_prefix("system:node:").is_some() {
        return if requestor == subject.common_name {
            CsrVerdict::Approve(
                "AutoApproved",
                format!("Auto approving self kubelet client certificate for node {node}."),
            )
        } else {
            CsrVerdict::Deny(
                "NodeNameMismatch",
                format!("{requestor} may not ask for a certificate of another node ({})", subject.common_name),
            )
        };
    }
    CsrVerdict::Leave
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(token: &Token, extra: &[(&str, &str)]) -> Value {
        let mut data = serde_json::Map::new();
        for (k, v) in bt::secret_data(token, None, &[bt::DEFAULT_NODE_GROUP.into()], "") {
            data.insert(k, json!(b64(&v)));
        }
        for (k, v) in extra {
            data.insert(k.to_string(), json!(b64(v)));
        }
        json!({"type": bt::SECRET_TYPE, "metadata": {"name": token.secret_name()}, "data": data})
    }

    #[test]
    fn a_token_is_its_bootstrap_user_while_its_secret_says_so() {
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let now = chrono::Utc::now();
        let user = authenticate(&token, Some(&secret(&token, &[])), now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert!(
            user.groups.contains(&bt::GROUP.to_string()) && user.groups.contains(&bt::DEFAULT_NODE_GROUP.to_string())
        );
        let wrong = Token::parse("abcdef.ffffffffffffffff").unwrap();
        assert!(authenticate(&wrong, Some(&secret(&token, &[])), now).unwrap_err().contains("does not match"));
        assert!(authenticate(&token, None, now).is_err());
        let expired = secret(&token, &[("expiration", "2020-01-01T00:00:00Z")]);
        assert!(authenticate(&token, Some(&expired), now).unwrap_err().contains("expired"));
        let no_auth = secret(&token, &[("usage-bootstrap-authentication", "false")]);
        assert!(authenticate(&token, Some(&no_auth), now).is_err());
        let escalating = secret(&token, &[("auth-extra-groups", "system:masters")]);
        assert!(authenticate(&token, Some(&escalating), now).is_err());
    }

    fn csr(user: &str, groups: &[&str], cn: &str, orgs: &[&str], usages: &[&str]) -> Value {
        let (pem, _) = berth_proto::pki::client_csr(cn, orgs).unwrap();
        json!({"spec": {"signerName": KUBELET_CLIENT_SIGNER, "username": user, "groups": groups,
                        "usages": usages, "request": b64(&pem)}})
    }

    #[test]
    fn node_client_requests_are_approved_for_bootstrappers_and_the_node_itself_only() {
        let usages = &["digital signature", "client auth"];
        let boot = csr("system:bootstrap:abcdef", &[bt::GROUP], "system:node:n1", &["system:nodes"], usages);
        assert!(matches!(csr_verdict(&boot), CsrVerdict::Approve(..)));
        let renew = csr("system:node:n1", &["system:nodes"], "system:node:n1", &["system:nodes"], usages);
        assert!(matches!(csr_verdict(&renew), CsrVerdict::Approve(..)));
        let other = csr("system:node:n1", &["system:nodes"], "system:node:n2", &["system:nodes"], usages);
        assert!(matches!(csr_verdict(&other), CsrVerdict::Deny("NodeNameMismatch", _)));
        let masters = csr("system:bootstrap:abcdef", &[bt::GROUP], "system:node:n1", &["system:masters"], usages);
        assert!(matches!(csr_verdict(&masters), CsrVerdict::Deny(..)));
        let serving =
            csr("system:bootstrap:abcdef", &[bt::GROUP], "system:node:n1", &["system:nodes"], &["server auth"]);
        assert!(matches!(csr_verdict(&serving), CsrVerdict::Deny(..)));
        let alice = csr("alice", &["system:authenticated"], "system:node:n1", &["system:nodes"], usages);
        assert_eq!(csr_verdict(&alice), CsrVerdict::Leave);
        let mut decided = boot.clone();
        decided["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        assert_eq!(csr_verdict(&decided), CsrVerdict::Leave);
    }
}

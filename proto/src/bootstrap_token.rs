//! Bootstrap tokens, as kubeadm makes them and kube-apiserver reads them: `<id>.<secret>`
//! (6 and 16 characters of `[a-z0-9]`), stored as the Secret `kube-system/bootstrap-token-<id>`
//! of type `bootstrap.kubernetes.io/token`. One definition for the server (which
//! authenticates them and signs `cluster-info` with them), berthctl (which makes them) and
//! the agent (which joins with one), and kubeadm's discovery with them ([`discover`]).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group every bootstrap token's user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The extra group kubeadm gives its node-join tokens (and `berthctl token create`).
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The extra group of tokens that join servers (`berthctl token create --control-plane`):
/// they may read the cluster's CAs and keys.
pub const CONTROL_PLANE_GROUP: &str = "system:bootstrappers:berth:control-plane";
/// Where the cluster's discovery document lives (readable by anyone).
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO: &str = "cluster-info";
/// The key of a token's signature in `cluster-info`.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";

/// A parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

fn is_token_chars(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Token {
    /// `<id>.<secret>`, or `None` if it is not shaped like a bootstrap token.
    pub fn parse(text: &str) -> Option<Token> {
        let (id, secret) = text.split_once('.')?;
        (is_token_chars(id, 6) && is_token_chars(secret, 16)).then(|| Token { id: id.into(), secret: secret.into() })
    }

    /// A new random token.
    pub fn generate() -> Token {
        use ring::rand::SecureRandom;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let rng = ring::rand::SystemRandom::new();
        let mut text = String::with_capacity(22);
        while text.len() < 22 {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes).expect("the system has randomness");
            // 252 = 7·36: bytes above it are dropped, so every character is equally likely.
            text.extend(bytes.iter().filter(|b| **b < 252).map(|b| ALPHABET[usize::from(*b % 36)] as char));
        }
        Token { id: text[..6].into(), secret: text[6..22].into() }
    }

    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// The user a token authenticates as.
    pub fn username(&self) -> String {
        format!("system:bootstrap:{}", self.id)
    }
}

/// For flags (`--token`): kubeadm's shape or an error saying it.
impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Token, String> {
        Token::parse(s).ok_or_else(|| "the bootstrap token must be of the form [a-z0-9]{6}.[a-z0-9]{16}".to_string())
    }
}

/// The name TLS checks Berth servers' certificates against: the `kubernetes` Service's,
/// which every server's serving certificate carries whatever address it is reached on.
pub const API_SERVER_NAME: &str = "kubernetes";

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// The `stringData` of a token's Secret: authentication and signing usages, `expiration`
/// (RFC 3339, if any), extra groups and a description.
pub fn secret_data(
    token: &Token,
    expiration: Option<&str>,
    groups: &[String],
    description: &str,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("token-id".to_string(), token.id.clone()),
        ("token-secret".to_string(), token.secret.clone()),
        ("usage-bootstrap-authentication".to_string(), "true".to_string()),
        ("usage-bootstrap-signing".to_string(), "true".to_string()),
    ]);
    if let Some(e) = expiration {
        data.insert("expiration".into(), e.into());
    }
    if !groups.is_empty() {
        data.insert("auth-extra-groups".into(), groups.join(","));
    }
    if !description.is_empty() {
        data.insert("description".into(), description.into());
    }
    data
}

/// The detached JWS (`header..signature`, HS256 keyed by the whole token) with which
/// `cluster-info`'s kubeconfig is signed for `token` (kube's bootstrapsigner): a joining
/// node holding the token checks the kubeconfig it fetched without TLS trust came from the
/// cluster.
pub fn detached_jws(kubeconfig: &str, token: &Token) -> String {
    let header = B64URL.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id));
    let signing_input = format!("{header}.{}", B64URL.encode(kubeconfig));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.to_string().as_bytes());
    let signature = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{header}..{}", B64URL.encode(signature.as_ref()))
}

/// Whether `jws` is `token`'s signature of `kubeconfig`.
pub fn verify_detached_jws(kubeconfig: &str, token: &Token, jws: &str) -> bool {
    let Some((header, signature)) = jws.split_once("..") else { return false };
    let Ok(signature) = B64URL.decode(signature) else { return false };
    let signing_input = format!("{header}.{}", B64URL.encode(kubeconfig));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.to_string().as_bytes());
    ring::hmac::verify(&key, signing_input.as_bytes(), &signature).is_ok()
}

/// How long one discovery request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What discovery found: the cluster's CA and servers.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub ca_pem: String,
    pub servers: Vec<String>,
}

/// Checks a cluster-info ConfigMap's data against `token` and `pins` (pure): the token's
/// signature must verify and the CA must be pinned (unless `pins` is empty, which is
/// `--discovery-token-unsafe-skip-ca-verification`).
pub fn check_cluster_info(
    data: &std::collections::BTreeMap<String, String>,
    token: &Token,
    pins: &[String],
) -> std::result::Result<Discovered, String> {
    let kubeconfig = data.get("kubeconfig").ok_or("the cluster-info ConfigMap has no kubeconfig")?;
    let jws = data.get(&format!("{}{}", JWS_PREFIX, token.id)).ok_or_else(|| {
        format!(
            "there is no JWS signed token in the cluster-info ConfigMap: token id {:?} is invalid for this cluster or \
             has expired (a token just created is signed within seconds)",
            token.id
        )
    })?;
    if !verify_detached_jws(kubeconfig, token, jws) {
        return Err(format!("failed to verify the JWS signature of cluster-info with token id {:?}", token.id));
    }
    let (servers, ca_pem) =
        crate::kubeconfig::read_cluster_info(kubeconfig).ok_or("the cluster-info kubeconfig has no cluster CA")?;
    let hash = crate::pki::ca_cert_hash(&ca_pem).map_err(|e| format!("the cluster-info CA: {e}"))?;
    if !pins.is_empty() && !pins.iter().any(|p| p.eq_ignore_ascii_case(&hash)) {
        return Err(format!(
            "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{hash}\" are pinned"
        ));
    }
    Ok(Discovered { ca_pem, servers })
}

/// Why discovery failed: worth another try (the document is not there or not signed
/// yet), or final (it names a CA that is not pinned).
enum Discovery {
    Retry(String),
    Final(String),
}

/// Reads and checks `cluster-info` from the first of `servers` that answers, trying again
/// (every second, for at most `timeout`) while it is missing or not yet signed with the
/// token, as kubeadm's discovery does; a CA that is not pinned fails at once.
pub async fn discover(
    servers: &[String],
    token: &Token,
    pins: &[String],
    timeout: std::time::Duration,
) -> Result<Discovered, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut last = String::from("no --server given");
        for server in servers {
            match discover_at(server, token, pins).await {
                Ok(found) => return Ok(found),
                Err(Discovery::Final(why)) => return Err(why),
                Err(Discovery::Retry(why)) => last = why,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tracing::info!(%last, "discovery: trying again");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn discover_at(server: &str, token: &Token, pins: &[String]) -> std::result::Result<Discovered, Discovery> {
    let url = server.parse().map_err(|e| Discovery::Final(format!("{server}: {e}")))?;
    let mut config = kube::Config::new(url);
    // Nothing is trusted yet: what is read is checked against the token and the pins.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).map_err(|e| Discovery::Final(format!("{server}: {e}")))?;
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, CLUSTER_INFO_NAMESPACE);
    let cm = match tokio::time::timeout(REQUEST_TIMEOUT, api.get(CLUSTER_INFO)).await {
        Ok(Ok(cm)) => cm,
        Ok(Err(e)) => return Err(Discovery::Retry(format!("{server}: reading cluster-info: {e}"))),
        Err(_) => return Err(Discovery::Retry(format!("{server}: reading cluster-info: timed out"))),
    };
    let data = cm.data.unwrap_or_default();
    check_cluster_info(&data, token, pins).map_err(|why| {
        if why.contains("none of the public keys") {
            Discovery::Final(why)
        } else {
            Discovery::Retry(why)
        }
    })
}

/// A client of `server` trusting `ca_pem`, authenticating with `token` (what a joining
/// agent or server uses once discovery has pinned the CA).
pub fn client(server: &str, ca_pem: &str, token: &Token) -> Result<kube::Client, String> {
    let mut config = kube::Config::new(server.parse().map_err(|e| format!("{server}: {e}"))?);
    config.root_cert = crate::tls::certificates("CA", ca_pem).ok().map(|c| c.into_iter().map(|c| c.to_vec()).collect());
    config.tls_server_name = Some(API_SERVER_NAME.into());
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).map_err(|e| format!("{server}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_kubeadms_shape_and_generate_so() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!((t.id.as_str(), t.username()), ("abcdef", "system:bootstrap:abcdef".to_string()));
        for bad in ["abcdef0123456789abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdef", "abcdef.0123", ""] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
        let g = Token::generate();
        assert_eq!(Token::parse(&g.to_string()), Some(g.clone()));
        assert_ne!(Token::generate(), g);
    }

    #[test]
    fn a_signature_verifies_for_its_token_and_kubeconfig_only() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let jws = detached_jws("kubeconfig", &t);
        assert!(verify_detached_jws("kubeconfig", &t, &jws));
        assert!(!verify_detached_jws("kubeconfig2", &t, &jws));
        assert!(!verify_detached_jws("kubeconfig", &Token::generate(), &jws));
        assert!(!verify_detached_jws("kubeconfig", &t, "garbage"));
    }

    #[test]
    fn discovery_trusts_only_a_signed_document_with_a_pinned_ca() {
        let ca = crate::pki::Ca::generate("test-ca").unwrap();
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let kubeconfig =
            crate::kubeconfig::cluster_info_kubeconfig_yaml(&["https://10.0.0.1:6443".into()], &ca.issued.cert_pem);
        let data = std::collections::BTreeMap::from([
            ("kubeconfig".to_string(), kubeconfig.clone()),
            ("jws-kubeconfig-abcdef".to_string(), detached_jws(&kubeconfig, &token)),
        ]);
        let pin = ca.cert_hash().unwrap();
        let found = check_cluster_info(&data, &token, std::slice::from_ref(&pin)).unwrap();
        assert_eq!((found.ca_pem.as_str(), found.servers.len()), (ca.issued.cert_pem.as_str(), 1));
        let other = crate::pki::Ca::generate("other").unwrap().cert_hash().unwrap();
        let err = check_cluster_info(&data, &token, &[other]).unwrap_err();
        assert!(err.contains("none of the public keys") && err.contains(&pin), "{err}");
        let stranger = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        assert!(check_cluster_info(&data, &stranger, std::slice::from_ref(&pin))
            .unwrap_err()
            .contains("no JWS signed token"));
        let wrong_secret = Token::parse("abcdef.ffffffffffffffff").unwrap();
        assert!(check_cluster_info(&data, &wrong_secret, &[pin]).unwrap_err().contains("failed to verify"));
    }
}

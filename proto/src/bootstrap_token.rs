//! Bootstrap tokens, as kubeadm makes them and kube-apiserver reads them: `<id>.<secret>`
//! (6 and 16 characters of `[a-z0-9]`), stored as the Secret `kube-system/bootstrap-token-<id>`
//! of type `bootstrap.kubernetes.io/token`. One definition for the server (which
//! authenticates them and signs `cluster-info` with them), berthctl (which makes them) and
//! the agent (which joins with one).

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
}

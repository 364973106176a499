//! Service-account tokens: kube-apiserver's bound tokens, signed JWTs (ES256 under the
//! cluster's service-account key, `pki/sa.key`).
//!
//! [`Issuer::sign`] makes a token from [`Claims`]; [`Issuer::verify`] checks a presented
//! one — signature, issuer, audience, validity window — and returns its claims, leaving
//! the lookups (does the account, the pod still exist?) to the authenticator. The public
//! half is published as JWKS ([`Issuer::jwks`]) with the OIDC discovery document
//! ([`Issuer::openid_configuration`]), so that other systems can verify tokens too.
//!
//! JWS is small enough to do with `ring` (already our AES-GCM), which keeps to one
//! crypto library; the format is RFC 7515's compact serialization.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// kubeadm's issuer (and so the default API audience).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew tolerated on `nbf` and `exp` (kube-apiserver allows a minute too).
const LEEWAY_SECONDS: i64 = 60;
/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A reference to a named object in the `kubernetes.io` claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claims: whose token it is and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// A bound service-account token's claims (kube-apiserver's `privateClaims`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The username of service account `name` in `namespace`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups every service account of `namespace` is in.
pub fn groups(namespace: &str) -> Vec<String> {
    vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")]
}

/// Why a token is refused (logged; the client only sees 401).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    WrongIssuer(String),
    WrongAudience(Vec<String>),
    Expired,
    NotYetValid,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => write!(f, "not a JWT"),
            TokenError::BadSignature => write!(f, "not signed with ES256 by this cluster's service-account key"),
            TokenError::WrongIssuer(iss) => write!(f, "issued by {iss:?}, not this cluster"),
            TokenError::WrongAudience(aud) => write!(f, "for audiences {aud:?}, none of this API's"),
            TokenError::Expired => write!(f, "expired"),
            TokenError::NotYetValid => write!(f, "not valid yet"),
        }
    }
}

/// The cluster's token signer and verifier.
pub struct Issuer {
    key: EcdsaKeyPair,
    kid: String,
    pub issuer: String,
    /// The audiences this API accepts (`--api-audiences`; default: the issuer).
    pub api_audiences: Vec<String>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("kid", &self.kid).field("issuer", &self.issuer).finish()
    }
}

impl Issuer {
    /// An issuer signing with the PKCS#8 PEM P-256 key `key_pem`.
    pub fn from_pem(key_pem: &str, issuer: &str) -> Result<Issuer, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivatePkcs8KeyDer;
        let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("the service-account key is not a PKCS#8 PEM key: {e}"))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der(), &SystemRandom::new())
                .map_err(|e| format!("the service-account key is not a P-256 key: {e}"))?;
        // kube-apiserver's key id: the SHA-256 of the public key's DER, base64url.
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Issuer { key, kid, issuer: issuer.to_string(), api_audiences: vec![issuer.to_string()] })
    }

    /// A token carrying `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature =
            self.key.sign(&SystemRandom::new(), signing_input.as_bytes()).expect("ECDSA signing does not fail");
        format!("{signing_input}.{}", B64.encode(signature.as_ref()))
    }

    /// The claims of `token` if this issuer signed it for one of this API's audiences and
    /// it is valid at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value =
            B64.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(TokenError::BadSignature);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..header_and_payload_len(token)];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            B64.decode(payload).ok().and_then(|p| serde_json::from_slice(&p).ok()).ok_or(TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| self.api_audiences.contains(a)) {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]})
    }

    /// The OIDC discovery document (`/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        Issuer::from_pem(&berth_proto::pki::new_service_account_key().unwrap(), DEFAULT_ISSUER).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: username("default", "builder"),
            aud: vec![DEFAULT_ISSUER.into()],
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: "1".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef { name: "builder".into(), uid: "u1".into() },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_and_says_whose_it_is() {
        let issuer = issuer();
        let now = 1_700_000_000;
        let token = issuer.sign(&claims(now));
        assert_eq!(issuer.verify(&token, now + 10).unwrap(), claims(now));
        assert_eq!(issuer.verify(&token, now + 3600 + 61), Err(TokenError::Expired));
        assert_eq!(issuer.verify(&token, now - 61), Err(TokenError::NotYetValid));
        let jwks = issuer.jwks();
        assert_eq!(jwks["keys"][0]["kid"], issuer.kid);
        assert_eq!(issuer.openid_configuration()["jwks_uri"], format!("{DEFAULT_ISSUER}/openid/v1/jwks"));
    }

    #[test]
    fn forged_foreign_and_garbled_tokens_are_refused() {
        let (issuer, stranger) = (issuer(), self::issuer());
        let now = 1_700_000_000;
        assert_eq!(issuer.verify(&stranger.sign(&claims(now)), now), Err(TokenError::BadSignature));
        // The payload changed after signing.
        let token = issuer.sign(&claims(now));
        let mut forged = claims(now);
        forged.sub = username("kube-system", "admin");
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&forged).unwrap()), parts[2]);
        assert_eq!(issuer.verify(&tampered, now), Err(TokenError::BadSignature));
        // alg "none" is never accepted.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(issuer.verify(&none, now), Err(TokenError::BadSignature));
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(issuer.verify(garbage, now).is_err(), "{garbage}");
        }
        let mut other_audience = claims(now);
        other_audience.aud = vec!["vault".into()];
        assert!(matches!(issuer.verify(&issuer.sign(&other_audience), now), Err(TokenError::WrongAudience(_))));
        let mut other_issuer = claims(now);
        other_issuer.iss = "https://elsewhere".into();
        assert!(matches!(issuer.verify(&issuer.sign(&other_issuer), now), Err(TokenError::WrongIssuer(_))));
    }
}

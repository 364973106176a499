//! rustls configurations for every Berth port and client, built from the PEM material of
//! [`crate::pki`], with the ring provider (no aws-lc C build), and the one reading of an
//! X.509 client certificate as a Kubernetes user ([`CertUser`]: the common name is the user,
//! the organizations its groups).
//!
//! The API port *requests* a client certificate but does not require one (bearer tokens
//! and anonymous health checks arrive without), and does not refuse a certificate from an
//! unknown CA during the handshake: as kube-apiserver (Go's `RequestClientCert`), the
//! handshake only proves the client holds the certificate's key, and the authenticator
//! then checks the chain ([`ClientCertCheck::user`]) and answers 401 — a clear HTTP error
//! instead of a TLS alert.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// What went wrong building a TLS configuration or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: no PEM {kind} in it")]
    NoPem { what: String, kind: &'static str },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

/// ALPN protocols of the HTTP ports: HTTP/2 first (kubectl and client-go use it), then 1.1.
pub const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider of every Berth TLS configuration.
pub fn provider() -> Arc<CryptoProvider> {
    // ring's provider is deprecated only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM bundle (`what` names it in errors).
pub fn certificates(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid { what: what.into(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem { what: what.into(), kind: "certificate" });
    }
    Ok(certs)
}

/// The private key of a PEM file (`what` names it in errors).
pub fn private_key(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| TlsError::NoPem { what: what.into(), kind: "private key" })
}

/// A root store holding the CA certificates of `ca_pem`.
pub fn roots(what: &str, ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(what, ca_pem)? {
        roots.add(cert).map_err(|e| TlsError::Invalid { what: what.into(), message: e.to_string() })?;
    }
    Ok(Arc::new(roots))
}

/// A Kubernetes user read from a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUser {
    pub name: String,
    pub groups: Vec<String>,
    /// The certificate's `notAfter`.
    pub not_after: std::time::SystemTime,
}

impl CertUser {
    /// Whether the certificate still holds at `now`. The chain is verified once, at the
    /// handshake; a connection can outlive its certificate, so every request asks again
    /// (kube-apiserver verifies the chain per request).
    pub fn check_valid_at(&self, now: std::time::SystemTime) -> Result<(), String> {
        if now <= self.not_after {
            return Ok(());
        }
        let rfc3339 = |t: std::time::SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        Err(format!(
            "x509: certificate has expired or is not yet valid: current time {} is after {}",
            rfc3339(now),
            rfc3339(self.not_after)
        ))
    }
}

/// Checks client certificates against the cluster CA after the handshake.
#[derive(Debug)]
pub struct ClientCertCheck {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCertCheck {
    /// Trusts client certificates issued by the CAs of `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<ClientCertCheck, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots("client CA", ca_pem)?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid { what: "client CA".into(), message: e.to_string() })?;
        Ok(ClientCertCheck { verifier })
    }

    /// The user of a presented chain (leaf first), if the cluster CA issued it and it is
    /// valid now; else why not (expired, another CA, no common name).
    pub fn user(&self, chain: &[CertificateDer<'_>]) -> Result<CertUser, String> {
        let (leaf, intermediates) = chain.split_first().ok_or("no client certificate")?;
        self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).map_err(|e| format!("x509: {e}"))?;
        cert_user(leaf)
    }
}

/// The user a certificate names: CN → user, O → groups (kube-apiserver's reading).
pub fn cert_user(der: &[u8]) -> Result<CertUser, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("x509: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or("x509: the certificate has no common name")?
        .to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect();
    let not_after =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
    Ok(CertUser { name, groups, not_after })
}

/// Asks for a client certificate, checks that the client holds its key, and leaves the
/// chain's trust to [`ClientCertCheck`] (see the module header).
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate replaceable while in use (renewal before expiry): every new handshake
/// gets the current one. A port's serving certificate, or a client's identity (the agent's
/// node certificate, rotated while it runs).
#[derive(Debug)]
pub struct ReloadableCert {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<ReloadableCert>, TlsError> {
        Ok(Arc::new(ReloadableCert { current: std::sync::RwLock::new(certified_key(cert_pem, key_pem)?) }))
    }

    /// Presents `cert_pem` from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let next = certified_key(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl rustls::client::ResolvesClientCert for ReloadableCert {
    fn resolve(&self, _root_hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = provider()
        .key_provider
        .load_private_key(private_key("key", key_pem)?)
        .map_err(|e| TlsError::Invalid { what: "key".into(), message: e.to_string() })?;
    let certified = CertifiedKey::new(certificates("certificate", cert_pem)?, key);
    certified.keys_match().map_err(|e| TlsError::Invalid { what: "certificate".into(), message: e.to_string() })?;
    Ok(Arc::new(certified))
}

/// How a server port treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Ask for one, accept the connection without (or with an untrusted one): the HTTP
    /// layer authenticates (the Kubernetes API).
    Request,
    /// Refuse the handshake without a certificate from the CA (etcd's
    /// `--client-cert-auth`, Raft peers).
    Require,
}

/// A server configuration presenting `cert`, checking clients against `client_ca_pem` as
/// `auth` says, offering `alpn`.
pub fn server_config(
    cert: Arc<ReloadableCert>,
    client_ca_pem: &str,
    auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let invalid = |what: &str, e: rustls::Error| TlsError::Invalid { what: what.into(), message: e.to_string() };
    let roots = roots("client CA", client_ca_pem)?;
    let verifier: Arc<dyn ClientCertVerifier> = match auth {
        ClientAuth::Require => WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Invalid { what: "client CA".into(), message: e.to_string() })?,
        ClientAuth::Request => Arc::new(RequestClientCert {
            inner: WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Invalid { what: "client CA".into(), message: e.to_string() })?,
        }),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration trusting `ca_pem`, presenting `client` (certificate and key PEM)
/// when given.
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Result<rustls::ClientConfig, TlsError> {
    let invalid = |what: &str, e: rustls::Error| TlsError::Invalid { what: what.into(), message: e.to_string() };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?
        .with_root_certificates(roots("CA", ca_pem)?);
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates("client certificate", cert)?, private_key("client key", key)?)
            .map_err(|e| invalid("client certificate", e)),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate, still checking that the server holds its key: agents
/// serve self-signed certificates, which kube-apiserver does not verify unless given
/// `--kubelet-certificate-authority` (see [`kubelet_client_config`]).
#[derive(Debug)]
struct AnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The API server's client configuration towards agents' ports: its
/// `apiserver-kubelet-client` certificate (`cert_pem`, `key_pem`), and — as kube-apiserver
/// without `--kubelet-certificate-authority` — no check of the agent's self-signed
/// serving certificate. HTTP/1.1 only: exec and port-forward upgrade the connection.
pub fn kubelet_client_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let invalid = |what: &str, e: rustls::Error| TlsError::Invalid { what: what.into(), message: e.to_string() };
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert { provider }))
        .with_client_auth_cert(certificates("client certificate", cert_pem)?, private_key("client key", key_pem)?)
        .map_err(|e| invalid("client certificate", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A PEM certificate from its DER bytes.
pub fn pem_of_der(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// Test support: TLS handshakes in memory.
#[cfg(test)]
pub(crate) mod in_memory {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

    /// Runs a handshake between `server` and `client` (checking the server as `name`); the
    /// server's view of the client on success, else which side failed and why.
    pub fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<ServerConnection, String> {
        let mut c = ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap()).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(s);
            }
        }
        Err("the handshake did not finish".into())
    }
}

#[cfg(test)]
mod tests {
    use rustls::ServerConnection;

    use super::*;
    use crate::pki::Ca;

    fn handshake(server: rustls::ServerConfig, client: rustls::ClientConfig) -> Result<ServerConnection, String> {
        in_memory::handshake(Arc::new(server), Arc::new(client), "localhost")
    }

    #[test]
    fn the_api_port_lets_the_authenticator_judge_client_certificates() {
        let ca = Ca::generate("berth-ca").unwrap();
        let serving = ca.issue_serving("berth-server", &["localhost".into()]).unwrap();
        let server = || {
            let cert = ReloadableCert::new(&serving.cert_pem, &serving.key_pem).unwrap();
            server_config(cert, &ca.issued.cert_pem, ClientAuth::Request, &HTTP_ALPN).unwrap()
        };
        let check = ClientCertCheck::new(&ca.issued.cert_pem).unwrap();
        let admin = ca.issue_client("kubernetes-admin", &["system:masters"]).unwrap();
        let client = client_config(&ca.issued.cert_pem, Some((&admin.cert_pem, &admin.key_pem))).unwrap();
        let s = handshake(server(), client).unwrap();
        let user = check.user(s.peer_certificates().unwrap()).unwrap();
        assert_eq!(
            (user.name.as_str(), user.groups.as_slice()),
            ("kubernetes-admin", ["system:masters".to_string()].as_slice())
        );
        assert!(user.check_valid_at(std::time::SystemTime::now()).is_ok());
        let later = user.not_after + std::time::Duration::from_secs(1);
        assert!(user.check_valid_at(later).unwrap_err().starts_with("x509: certificate has expired"));
        // No certificate: the connection is accepted, with no user.
        let s = handshake(server(), client_config(&ca.issued.cert_pem, None).unwrap()).unwrap();
        assert!(s.peer_certificates().is_none());
        // Another CA's certificate: the handshake succeeds, the check says why not.
        let stranger = Ca::generate("other").unwrap().issue_client("mallory", &["system:masters"]).unwrap();
        let client = client_config(&ca.issued.cert_pem, Some((&stranger.cert_pem, &stranger.key_pem))).unwrap();
        let s = handshake(server(), client).unwrap();
        let err = check.user(s.peer_certificates().unwrap()).unwrap_err();
        assert!(err.starts_with("x509:"), "{err}");
    }

    #[test]
    fn a_port_requiring_client_certificates_refuses_clients_without_one() {
        let ca = Ca::generate("etcd-ca").unwrap();
        let serving = ca.issue_serving("etcd", &["localhost".into()]).unwrap();
        let server = || {
            let cert = ReloadableCert::new(&serving.cert_pem, &serving.key_pem).unwrap();
            server_config(cert, &ca.issued.cert_pem, ClientAuth::Require, &[]).unwrap()
        };
        let err = handshake(server(), client_config(&ca.issued.cert_pem, None).unwrap()).unwrap_err();
        assert!(err.starts_with("server"), "{err}");
        let stranger = Ca::generate("other").unwrap().issue_client("root", &[]).unwrap();
        let client = client_config(&ca.issued.cert_pem, Some((&stranger.cert_pem, &stranger.key_pem))).unwrap();
        assert!(handshake(server(), client).unwrap_err().starts_with("server"));
        let root = ca.issue_client("root", &[]).unwrap();
        let client = client_config(&ca.issued.cert_pem, Some((&root.cert_pem, &root.key_pem))).unwrap();
        assert!(handshake(server(), client).is_ok());
    }

    #[test]
    fn garbage_material_is_named() {
        let err = ReloadableCert::new("nope", "nope").unwrap_err().to_string();
        assert_eq!(err, "key: no PEM private key in it");
        let ca = Ca::generate("c").unwrap();
        let other = ca.issue_client("x", &[]).unwrap();
        let err = ReloadableCert::new(&ca.issued.cert_pem, &other.key_pem).unwrap_err().to_string();
        assert!(err.starts_with("certificate:"), "a key that is not the certificate's: {err}");
        let cert = ReloadableCert::new(&ca.issued.cert_pem, &ca.issued.key_pem).unwrap();
        let err = server_config(cert, "nope", ClientAuth::Request, &[]).unwrap_err().to_string();
        assert!(err.contains("client CA"), "{err}");
        let err = client_config("nope", None).unwrap_err().to_string();
        assert_eq!(err, "CA: no PEM certificate in it");
        assert!(cert_user(b"not der").unwrap_err().starts_with("x509:"));
    }
}

//! The cluster's certificates, made with rcgen (ECDSA P-256, as kubeadm's defaults allow):
//! a self-signed [`Ca`] that issues serving certificates (the SANs a server answers on) and
//! client certificates (the common name is the user, organizations the groups — how
//! kube-apiserver reads an X.509 client), kubeadm's CA pin ([`ca_cert_hash`]: `sha256:` of
//! the CA's SubjectPublicKeyInfo, what `--discovery-token-ca-cert-hash` names), and private
//! keys written 0600. [`crate::tls`] turns them into rustls configurations.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// What went wrong making or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a PEM certificate")]
    NotPem,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority: issues the cluster's serving and client certificates.
#[derive(Debug, Clone)]
pub struct Ca {
    pub issued: Issued,
}

/// How long certificates are valid: the CA ten years, the others one (kubeadm's).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far `notBefore` is set back, for clocks a few minutes apart.
const BACKDATE: Duration = Duration::from_secs(300);

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // A short-lived certificate is backdated by at most half its life (as Kubernetes'
    // signer does): its holder renews at a fraction of notBefore..notAfter, and a full
    // five minutes would put that point in the past of a certificate valid for seconds.
    let backdate = BACKDATE.min(valid_for / 2);
    params.not_before = now - time::Duration::milliseconds(backdate.as_millis() as i64);
    params.not_after = now + time::Duration::seconds(valid_for.as_secs() as i64);
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Ca {
    /// A new self-signed CA named `common_name` (such as `berth-ca`).
    pub fn generate(common_name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(Ca { issued: Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() } })
    }

    /// The CA from its PEM certificate and key (as stored in a data dir).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        // Both must parse: a CA that cannot sign is refused here, not at first use.
        let key = KeyPair::from_pem(key_pem)?;
        Issuer::from_ca_cert_pem(cert_pem, &key)?;
        Ok(Ca { issued: Issued { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() } })
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Issued, PkiError> {
        let ca_key = KeyPair::from_pem(&self.issued.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.issued.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A serving certificate for `common_name` answering on `sans` (DNS names and IP
    /// addresses, such as every listen address, `kubernetes.default.svc.cluster.local` and
    /// the `kubernetes` Service's ClusterIP).
    pub fn issue_serving(&self, common_name: &str, sans: &[String]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = name(common_name, &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A certificate that both serves on `sans` and is a client (an etcd peer's: members
    /// dial each other with the same certificate they answer with).
    pub fn issue_peer(&self, common_name: &str, sans: &[String]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = name(common_name, &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A client certificate for user `user` in `groups` (`admin` in `system:masters`;
    /// `system:node:node-1` in `system:nodes`).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = Vec::<SanType>::new();
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// The client certificate for certificate signing request `csr_pem` (a node's TLS
    /// bootstrap), valid for `valid_for`: the request's subject (CN user, O groups) and
    /// public key, client-auth usage only, whatever else the request asked for.
    pub fn sign_client_csr(&self, csr_pem: &str, valid_for: Duration) -> Result<String, PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let ca_key = KeyPair::from_pem(&self.issued.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.issued.cert_pem, ca_key)?;
        let params = &mut csr.params;
        params.subject_alt_names = Vec::new();
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.custom_extensions = Vec::new();
        validity(params, valid_for);
        Ok(csr.signed_by(&issuer)?.pem())
    }

    /// kubeadm's pin of this CA: see [`ca_cert_hash`].
    pub fn cert_hash(&self) -> Result<String, PkiError> {
        ca_cert_hash(&self.issued.cert_pem)
    }
}

/// A self-signed serving certificate for `sans` (an agent's port, as kubelet makes one
/// when it is given none: the API server does not verify it).
pub fn self_signed_serving(common_name: &str, sans: &[String]) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name = name(common_name, &[]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, LEAF_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// `sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo — kubeadm's
/// `--discovery-token-ca-cert-hash`, which a joining node checks the CA against.
pub fn ca_cert_hash(cert_pem: &str) -> Result<String, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| PkiError::NotPem)?;
    if pem.label != "CERTIFICATE" {
        return Err(PkiError::NotPem);
    }
    let cert = pem.parse_x509().map_err(|_| PkiError::NotPem)?;
    Ok(format!("sha256:{}", hex(&Sha256::digest(cert.tbs_certificate.subject_pki.raw))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a certificate says about itself: when it expires and the names it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
    /// DNS names and IP addresses (as text) of its subjectAltName.
    pub sans: Vec<String>,
    /// Its subject, as `CN=…, O=…`.
    pub subject: String,
}

/// Reads the validity, SANs and subject of a PEM certificate.
pub fn cert_info(cert_pem: &str) -> Result<CertInfo, PkiError> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| PkiError::NotPem)?;
    let cert = pem.parse_x509().map_err(|_| PkiError::NotPem)?;
    let at = |t: x509_parser::time::ASN1Time| std::time::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                    16 => sans.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
        sans,
        subject: cert.subject().to_string(),
    })
}

/// Whether a serving certificate should be issued again: it lacks one of `wanted_sans`, or
/// less than a third of its lifetime is left (kubelet's rotation point is 70–90%; a third
/// leaves months for a one-year certificate).
pub fn needs_renewal(info: &CertInfo, wanted_sans: &[String], now: std::time::SystemTime) -> bool {
    let lifetime = info.not_after.duration_since(info.not_before).unwrap_or_default();
    let left = info.not_after.duration_since(now).unwrap_or_default();
    left < lifetime / 3 || wanted_sans.iter().any(|s| !info.sans.contains(s))
}

/// Where a data dir keeps its certificates (kubeadm's `/etc/kubernetes/pki`).
pub const PKI_DIR: &str = "pki";
/// A CA's files in its directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// The cluster's two CAs, kept apart as kubeadm keeps them: a certificate for the
/// Kubernetes API (a user's, a node's) must never open the store underneath it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// Signs the API's serving certificates and its users' and nodes' client certificates.
    Cluster,
    /// Signs the etcd client port's and the Raft peer port's certificates and the etcd
    /// clients' (`pki/etcd`, as kubeadm's).
    Etcd,
}

impl CaRole {
    /// The CA's directory under a data dir.
    pub fn dir(self, data_dir: &Path) -> std::path::PathBuf {
        match self {
            CaRole::Cluster => data_dir.join(PKI_DIR),
            CaRole::Etcd => data_dir.join(PKI_DIR).join("etcd"),
        }
    }

    /// What the CA is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            CaRole::Cluster => "cluster CA",
            CaRole::Etcd => "etcd CA",
        }
    }

    /// The common name of a CA made for this role.
    pub fn common_name(self) -> &'static str {
        match self {
            CaRole::Cluster => "berth-ca",
            CaRole::Etcd => "berth-etcd-ca",
        }
    }
}

/// Reads a data dir's CA of `role`, if it has one.
pub fn read_ca(data_dir: &Path, role: CaRole) -> Result<Option<Ca>, PkiError> {
    let dir = role.dir(data_dir);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path: path.display().to_string(), source })
    };
    if !dir.join(CA_CERT).exists() {
        return Ok(None);
    }
    Ok(Some(Ca::from_pem(&read(CA_CERT)?, &read(CA_KEY)?)?))
}

/// Writes a CA of `role` into a data dir (a fresh server's, or one a launcher prepares so
/// that the members of a statically bootstrapped cluster share one, as kubeadm's "copy the
/// certificates to each control-plane node").
pub fn write_ca(data_dir: &Path, role: CaRole, ca: &Ca) -> Result<(), PkiError> {
    let dir = role.dir(data_dir);
    let io = |source| PkiError::Io { path: dir.display().to_string(), source };
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::write(dir.join(CA_CERT), &ca.issued.cert_pem).map_err(io)?;
    write_private_key(&dir.join(CA_KEY), &ca.issued.key_pem)
}

/// Where a data dir keeps its encryption-at-rest configuration (kube-apiserver's
/// `EncryptionConfiguration`), shared by the members of a cluster like the CAs.
pub const ENCRYPTION_CONFIG: &str = "pki/encryption-config.yaml";

/// An `EncryptionConfiguration` encrypting Secrets with AES-GCM `keys` (the first
/// encrypts, all decrypt), then reading the plain ones written before.
pub fn encryption_config(keys: &[(&str, &[u8])]) -> String {
    use base64::Engine;
    let mut text = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n",
    );
    for (name, key) in keys {
        let secret = base64::engine::general_purpose::STANDARD.encode(key);
        text.push_str(&format!("      - name: {name}\n        secret: {secret}\n"));
    }
    text.push_str("  - identity: {}\n");
    text
}

/// [`encryption_config`] with a new random 32-byte key `key1`, as the first server of a
/// new cluster (or `berthctl certs ca`) writes it.
pub fn new_encryption_config() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut key).map_err(|_| "no randomness for a key".to_string())?;
    Ok(encryption_config(&[("key1", &key)]))
}

/// The subject a certificate signing request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrSubject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// The subject of PEM certificate signing request `csr_pem`, whose signature is checked
/// (a request signed by another key than the one it names is refused).
pub fn csr_subject(csr_pem: &str) -> Result<CsrSubject, PkiError> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let mut subject = CsrSubject { common_name: String::new(), organizations: Vec::new() };
    for (kind, value) in csr.params.distinguished_name.iter() {
        let text = match value {
            rcgen::DnValue::PrintableString(s) => s.to_string(),
            rcgen::DnValue::Utf8String(s) => s.clone(),
            other => format!("{other:?}"),
        };
        match kind {
            DnType::CommonName => subject.common_name = text,
            DnType::OrganizationName => subject.organizations.push(text),
            _ => {}
        }
    }
    Ok(subject)
}

/// A new key and a PEM certificate signing request for `user` in `groups` (what a node
/// sends in its TLS bootstrap): (csr_pem, key_pem).
pub fn client_csr(user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(user, groups);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Where a data dir keeps the cluster's service-account signing key (kubeadm's `sa.key`),
/// shared by the members of a cluster like the CAs.
pub const SERVICE_ACCOUNT_KEY: &str = "pki/sa.key";

/// The Secret (`kube-system`) in which the leader keeps the material a joining server
/// needs — readable by control-plane bootstrap tokens only — and its keys → the files in a
/// data dir they are.
pub const CONTROL_PLANE_SECRET: &str = "berth-control-plane-pki";
pub const CONTROL_PLANE_FILES: &[(&str, &str)] = &[
    ("ca.crt", "pki/ca.crt"),
    ("ca.key", "pki/ca.key"),
    ("etcd-ca.crt", "pki/etcd/ca.crt"),
    ("etcd-ca.key", "pki/etcd/ca.key"),
    ("sa.key", SERVICE_ACCOUNT_KEY),
    ("encryption-config.yaml", ENCRYPTION_CONFIG),
];

/// A new service-account signing key: P-256, PKCS#8 PEM (tokens are ES256 JWTs).
pub fn new_service_account_key() -> Result<String, PkiError> {
    Ok(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem())
}

/// Writes a private key readable by its owner only (0600), replacing any old file.
pub fn write_private_key(path: &Path, key_pem: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io { path: path.display().to_string(), source };
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(key_pem.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConfig, RootCertStore, ServerConfig};

    use super::*;

    fn chain(issued: &Issued) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        (vec![cert], PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap())
    }

    /// Configurations of a server presenting `server` and asking for a client certificate,
    /// and of a client presenting `client`, both trusting `ca`.
    fn configs(ca: &Ca, server: &Issued, client: &Issued) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        // ring, not aws-lc-rs (which needs cmake to build); its provider is deprecated only
        // for lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.issued.cert_pem.as_bytes()).unwrap()).unwrap();
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build().unwrap();
        let (cert, key) = chain(server);
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(cert, key)
            .unwrap();
        let (cert, key) = chain(client);
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(cert, key)
            .unwrap();
        (Arc::new(server), Arc::new(client))
    }

    use crate::tls::in_memory::handshake;

    #[test]
    fn a_serving_certificate_is_trusted_through_the_ca_and_a_client_certificate_names_user_and_groups() {
        let ca = Ca::generate("berth-ca").unwrap();
        let sans: Vec<String> = ["localhost", "kubernetes.default.svc.cluster.local", "127.0.0.1", "10.96.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let server = ca.issue_serving("berth-server", &sans).unwrap();
        let admin = ca.issue_client("admin", &["system:masters"]).unwrap();
        let (server_config, client_config) = configs(&ca, &server, &admin);
        for name in ["kubernetes.default.svc.cluster.local", "10.96.0.1", "127.0.0.1"] {
            let s = handshake(server_config.clone(), client_config.clone(), name).expect(name);
            let peer = s.peer_certificates().expect("the client's certificate").first().unwrap().clone();
            let (_, cert) = x509_parser::parse_x509_certificate(&peer).unwrap();
            let subject = cert.subject();
            let cn: Vec<&str> = subject.iter_common_name().map(|a| a.as_str().unwrap()).collect();
            let o: Vec<&str> = subject.iter_organization().map(|a| a.as_str().unwrap()).collect();
            assert_eq!((cn, o), (vec!["admin"], vec!["system:masters"]));
        }
        let refused = handshake(server_config.clone(), client_config.clone(), "elsewhere.example").unwrap_err();
        assert!(refused.contains("client"), "a name outside the SANs is refused: {refused}");
        // Another CA's client is refused by the server.
        let stranger = Ca::generate("other-ca").unwrap();
        let (_, stranger_client) = configs(&ca, &server, &stranger.issue_client("mallory", &[]).unwrap());
        assert!(handshake(server_config, stranger_client, "localhost").unwrap_err().starts_with("server"));
    }

    #[test]
    fn the_ca_pin_is_the_hash_of_its_public_key_and_survives_a_reload() {
        let ca = Ca::generate("berth-ca").unwrap();
        let pin = ca.cert_hash().unwrap();
        assert!(pin.starts_with("sha256:") && pin.len() == 7 + 64, "{pin}");
        let reloaded = Ca::from_pem(&ca.issued.cert_pem, &ca.issued.key_pem).unwrap();
        assert_eq!(reloaded.cert_hash().unwrap(), pin);
        assert_ne!(Ca::generate("berth-ca").unwrap().cert_hash().unwrap(), pin);
        assert!(matches!(ca_cert_hash(&ca.issued.key_pem), Err(PkiError::NotPem)));
        assert!(Ca::from_pem(&ca.issued.cert_pem, "garbage").is_err());
    }

    #[test]
    fn a_certificate_tells_its_names_and_when_to_renew_it() {
        let ca = Ca::generate("berth-ca").unwrap();
        let sans: Vec<String> = vec!["kubernetes".into(), "127.0.0.1".into(), "::1".into()];
        let serving = ca.issue_serving("berth-server", &sans).unwrap();
        let info = cert_info(&serving.cert_pem).unwrap();
        assert_eq!(info.sans, sans);
        let now = std::time::SystemTime::now();
        assert!(!needs_renewal(&info, &sans, now));
        assert!(needs_renewal(&info, &["10.0.0.9".to_string()], now), "a new address");
        let late = now + LEAF_VALIDITY * 3 / 4;
        assert!(needs_renewal(&info, &sans, late), "three quarters through its life");
        let dir = tempfile::tempdir().unwrap();
        assert!(read_ca(dir.path(), CaRole::Cluster).unwrap().is_none());
        write_ca(dir.path(), CaRole::Cluster, &ca).unwrap();
        assert_eq!(read_ca(dir.path(), CaRole::Cluster).unwrap().unwrap().issued, ca.issued);
        // The etcd CA lives apart (pki/etcd) and is not the cluster's.
        assert!(read_ca(dir.path(), CaRole::Etcd).unwrap().is_none());
        let etcd = Ca::generate(CaRole::Etcd.common_name()).unwrap();
        write_ca(dir.path(), CaRole::Etcd, &etcd).unwrap();
        assert!(dir.path().join("pki/etcd/ca.key").exists());
        assert_eq!(read_ca(dir.path(), CaRole::Etcd).unwrap().unwrap().issued, etcd.issued);
        assert_eq!(read_ca(dir.path(), CaRole::Cluster).unwrap().unwrap().issued, ca.issued);
    }

    #[test]
    fn private_keys_are_written_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        std::fs::write(&path, "old").unwrap();
        write_private_key(&path, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-----BEGIN PRIVATE KEY-----\n");
    }

    #[test]
    fn a_signed_request_keeps_its_subject_and_becomes_a_client_certificate_of_the_ca() {
        let ca = Ca::generate("test-ca").unwrap();
        let (csr, _key) = client_csr("system:node:n1", &["system:nodes"]).unwrap();
        let subject = csr_subject(&csr).unwrap();
        assert_eq!(subject.common_name, "system:node:n1");
        assert_eq!(subject.organizations, vec!["system:nodes".to_string()]);
        let cert = ca.sign_client_csr(&csr, Duration::from_secs(3600)).unwrap();
        let info = cert_info(&cert).unwrap();
        assert!(
            info.subject.contains("CN=system:node:n1") && info.subject.contains("O=system:nodes"),
            "{}",
            info.subject
        );
        let life = info.not_after.duration_since(info.not_before).unwrap();
        assert!(life >= Duration::from_secs(3600) && life <= Duration::from_secs(3600 + 301), "{life:?}");
        assert!(csr_subject("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").is_err());
    }
}

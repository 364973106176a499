//! `berthctl certs ca DATA_DIR...`: one cluster CA, one etcd CA and one encryption-at-rest
//! configuration for the members of a statically bootstrapped cluster (kubeadm's `init phase certs ca` and `etcd-ca`, then
//! "copy the certificates to each control-plane node"). Every server started with
//! `--initial-cluster-state new` would otherwise create CAs of its own; with them already
//! in each `DATA_DIR/pki` they all use the same ones, so a client trusting one server
//! trusts them all and the members accept each other as Raft peers.

use std::path::{Path, PathBuf};

use berth_proto::pki::{self, Ca, CaRole};

use crate::error::{CtlError, Result};
use crate::{emit, Out};

/// Flags of `certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create one cluster CA, one etcd CA and one encryption configuration and write them
    /// into DATA_DIR/pki (and DATA_DIR/pki/etcd) of every server named.
    Ca(CaArgs),
}

#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// The servers' data dirs (as their --data-dir).
    #[arg(required = true, value_name = "DATA_DIR")]
    pub data_dirs: Vec<PathBuf>,
}

fn pki_error(e: pki::PkiError) -> CtlError {
    CtlError::usage(format!("CA: {e}"))
}

/// The value already in one of `dirs` (all that have one must agree, `conflict` says
/// what differs otherwise), or `make`'s; written into every dir that lacks it.
fn share<T: PartialEq>(
    dirs: &[&Path],
    conflict: &str,
    read: impl Fn(&Path) -> Result<Option<T>>,
    make: impl FnOnce() -> Result<T>,
    write: impl Fn(&Path, &T) -> Result<()>,
) -> Result<T> {
    let mut found: Option<(T, &Path)> = None;
    for dir in dirs {
        if let Some(value) = read(dir)? {
            match &found {
                Some((first, at)) if *first != value => {
                    return Err(CtlError::usage(format!("{} and {} hold {conflict}", at.display(), dir.display())))
                }
                Some(_) => {}
                None => found = Some((value, dir)),
            }
        }
    }
    let value = match found {
        Some((value, _)) => value,
        None => make()?,
    };
    for dir in dirs {
        if read(dir)?.is_none() {
            write(dir, &value)?;
        }
    }
    Ok(value)
}

/// The CA already in one of `dirs` (all that have one must agree), or a new one; written
/// into every dir that lacks it.
pub fn share_ca(dirs: &[&Path], role: CaRole) -> Result<Ca> {
    let issued = share(
        dirs,
        &format!("different CAs ({}): a cluster has one of each", role.describe()),
        |dir| Ok(pki::read_ca(dir, role).map_err(pki_error)?.map(|ca| ca.issued)),
        || Ok(Ca::generate(role.common_name()).map_err(pki_error)?.issued),
        |dir, issued| pki::write_ca(dir, role, &Ca { issued: issued.clone() }).map_err(pki_error),
    )?;
    Ok(Ca { issued })
}

/// The secret file `relative` (under each data dir) already in one of `dirs` (all that
/// have one must agree), or `make`'s; written 0600 into every dir lacking it.
fn share_secret_file(dirs: &[&Path], relative: &str, what: &str, make: impl FnOnce() -> Result<String>) -> Result<()> {
    share(
        dirs,
        &format!("different {what}s: a cluster has one"),
        |dir| Ok(std::fs::read_to_string(dir.join(relative)).ok()),
        make,
        |dir, text| {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CtlError::io(format!("creating {}", parent.display()), e))?;
            }
            pki::write_private_key(&path, text).map_err(pki_error)
        },
    )
    .map(drop)
}

/// The encryption configuration already in one of `dirs` (all that have one must agree),
/// or a new one (Secrets under a fresh AES-GCM key); written into every dir lacking it, so
/// that every member reads what any member encrypted.
pub fn share_encryption_config(dirs: &[&Path]) -> Result<()> {
    share_secret_file(dirs, pki::ENCRYPTION_CONFIG, "encryption configuration", || {
        pki::new_encryption_config().map_err(CtlError::usage)
    })
}

/// The service-account signing key already in one of `dirs`, or a new one; written into
/// every dir lacking it, so that every member accepts the tokens any member issued.
pub fn share_service_account_key(dirs: &[&Path]) -> Result<()> {
    share_secret_file(dirs, pki::SERVICE_ACCOUNT_KEY, "service-account key", || {
        pki::new_service_account_key().map_err(pki_error)
    })
}

/// Runs `certs`.
pub fn run(args: CertsArgs, out: &mut Out) -> Result<()> {
    let CertsCommand::Ca(args) = args.command;
    let dirs: Vec<&Path> = args.data_dirs.iter().map(PathBuf::as_path).collect();
    let mut lines = String::new();
    for role in [CaRole::Cluster, CaRole::Etcd] {
        let ca = share_ca(&dirs, role)?;
        let hash = ca.cert_hash().map_err(pki_error)?;
        let list: Vec<String> = dirs.iter().map(|d| role.dir(d).join(pki::CA_CERT).display().to_string()).collect();
        lines.push_str(&format!("{} ({hash}) in:\n  {}\n", role.describe(), list.join("\n  ")));
    }
    share_encryption_config(&dirs)?;
    share_service_account_key(&dirs)?;
    for (relative, what) in
        [(pki::ENCRYPTION_CONFIG, "encryption configuration"), (pki::SERVICE_ACCOUNT_KEY, "service-account key")]
    {
        let list: Vec<String> = dirs.iter().map(|d| d.join(relative).display().to_string()).collect();
        lines.push_str(&format!("{what} in:\n  {}\n", list.join("\n  ")));
    }
    emit(out, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dir_gets_the_same_ca_and_differing_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
        let ca = share_ca(&[&a, &b], CaRole::Cluster).unwrap();
        assert_eq!(pki::read_ca(&b, CaRole::Cluster).unwrap().unwrap().issued, ca.issued);
        // A dir added later gets the existing CA.
        let again = share_ca(&[&a, &c], CaRole::Cluster).unwrap();
        assert_eq!(again.issued, ca.issued);
        assert_eq!(pki::read_ca(&c, CaRole::Cluster).unwrap().unwrap().issued, ca.issued);
        // The etcd CA is another one.
        let etcd = share_ca(&[&a, &b], CaRole::Etcd).unwrap();
        assert_ne!(etcd.issued, ca.issued);
        assert_eq!(pki::read_ca(&b, CaRole::Etcd).unwrap().unwrap().issued, etcd.issued);
        let other = tmp.path().join("other");
        pki::write_ca(&other, CaRole::Cluster, &Ca::generate("x").unwrap()).unwrap();
        let err = share_ca(&[&a, &other], CaRole::Cluster).unwrap_err().to_string();
        assert!(err.contains("different CAs (cluster CA)"), "{err}");
        // The encryption configuration likewise.
        share_encryption_config(&[&a, &b]).unwrap();
        let config = std::fs::read_to_string(a.join(pki::ENCRYPTION_CONFIG)).unwrap();
        assert!(config.contains("aesgcm"), "{config}");
        assert_eq!(std::fs::read_to_string(b.join(pki::ENCRYPTION_CONFIG)).unwrap(), config);
        std::fs::create_dir_all(other.join("pki")).unwrap();
        std::fs::write(other.join(pki::ENCRYPTION_CONFIG), pki::new_encryption_config().unwrap()).unwrap();
        let err = share_encryption_config(&[&a, &other]).unwrap_err().to_string();
        assert!(err.contains("different encryption configurations"), "{err}");
        // And the service-account key.
        share_service_account_key(&[&a, &b]).unwrap();
        let key = std::fs::read_to_string(a.join(pki::SERVICE_ACCOUNT_KEY)).unwrap();
        assert!(key.contains("PRIVATE KEY"), "{key}");
        assert_eq!(std::fs::read_to_string(b.join(pki::SERVICE_ACCOUNT_KEY)).unwrap(), key);
    }
}

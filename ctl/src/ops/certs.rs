//! `berthctl certs ca DATA_DIR...`: one cluster CA for the members of a statically
//! bootstrapped cluster (kubeadm's `init phase certs ca`, then "copy the certificates to
//! each control-plane node"). Every server started with `--initial-cluster-state new`
//! would otherwise create a CA of its own; with the CA already in each `DATA_DIR/pki` they
//! all use the same one, so a client trusting one server trusts them all.

use std::path::{Path, PathBuf};

use berth_proto::pki::{self, Ca};

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
    /// Create one cluster CA and write it into DATA_DIR/pki of every server named.
    Ca(CaArgs),
}

#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// The servers' data dirs (as their --data-dir).
    #[arg(required = true, value_name = "DATA_DIR")]
    pub data_dirs: Vec<PathBuf>,
}

fn pki_error(e: pki::PkiError) -> CtlError {
    CtlError::usage(format!("cluster CA: {e}"))
}

/// The CA already in one of `dirs` (all that have one must agree), or a new one; written
/// into every dir that lacks it.
pub fn share_ca(dirs: &[&Path]) -> Result<Ca> {
    let mut found: Option<(Ca, &Path)> = None;
    for dir in dirs {
        if let Some(ca) = pki::read_ca(dir).map_err(pki_error)? {
            match &found {
                Some((first, at)) if first.issued.cert_pem != ca.issued.cert_pem => {
                    return Err(CtlError::usage(format!(
                        "{} and {} hold different cluster CAs: a cluster has one",
                        at.display(),
                        dir.display()
                    )))
                }
                Some(_) => {}
                None => found = Some((ca, dir)),
            }
        }
    }
    let ca = match found {
        Some((ca, _)) => ca,
        None => Ca::generate("berth-ca").map_err(pki_error)?,
    };
    for dir in dirs {
        if pki::read_ca(dir).map_err(pki_error)?.is_none() {
            pki::write_ca(dir, &ca).map_err(pki_error)?;
        }
    }
    Ok(ca)
}

/// Runs `certs`.
pub fn run(args: CertsArgs, out: &mut Out) -> Result<()> {
    let CertsCommand::Ca(args) = args.command;
    let dirs: Vec<&Path> = args.data_dirs.iter().map(PathBuf::as_path).collect();
    let ca = share_ca(&dirs)?;
    let hash = ca.cert_hash().map_err(pki_error)?;
    let list: Vec<String> =
        dirs.iter().map(|d| d.join(pki::PKI_DIR).join(pki::CA_CERT).display().to_string()).collect();
    emit(out, &format!("cluster CA ({hash}) in:\n  {}\n", list.join("\n  ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dir_gets_the_same_ca_and_differing_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
        let ca = share_ca(&[&a, &b]).unwrap();
        assert_eq!(pki::read_ca(&b).unwrap().unwrap().issued, ca.issued);
        // A dir added later gets the existing CA.
        let again = share_ca(&[&a, &c]).unwrap();
        assert_eq!(again.issued, ca.issued);
        assert_eq!(pki::read_ca(&c).unwrap().unwrap().issued, ca.issued);
        let other = tmp.path().join("other");
        pki::write_ca(&other, &Ca::generate("x").unwrap()).unwrap();
        let err = share_ca(&[&a, &other]).unwrap_err().to_string();
        assert!(err.contains("different cluster CAs"), "{err}");
    }
}

//! Air-gapped nodes, k3s's convention: image archives (`*.tar`, OCI or Docker format) found
//! in the agent's images directory (`--images-dir`, default `DATA_DIR/images`) are imported
//! into its own containerd when it starts — in containerd's `k8s.io` namespace, the one CRI
//! serves, unpacked for its snapshotter — with containerd's own `ctr`. A pod then runs from
//! such an image without any registry (a tagged image is `IfNotPresent` by default).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long importing one archive may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(300);

/// The archives to import from `dir`, in name order (none when it does not exist).
pub fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar"))
        .collect();
    found.sort();
    found
}

/// Imports every archive of `dir` into the containerd listening on `socket`; one result
/// per archive (a failed archive does not stop the others, nor the agent).
pub async fn import_all(dir: &Path, socket: &Path) -> Vec<(PathBuf, Result<(), String>)> {
    let mut results = Vec::new();
    for archive in archives(dir) {
        let run = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&archive)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let result = match tokio::time::timeout(IMPORT_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!("ctr images import: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Ok(Err(e)) => Err(format!("running ctr: {e}")),
            Err(_) => Err(format!("no import within {} s", IMPORT_TIMEOUT.as_secs())),
        };
        match &result {
            Ok(()) => tracing::info!(archive = %archive.display(), "imported an image archive"),
            Err(e) => tracing::warn!(archive = %archive.display(), error = %e, "importing an image archive failed"),
        }
        results.push((archive, result));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tar_files_are_archives() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.tar")).unwrap();
        let names: Vec<String> =
            archives(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["a.tar", "b.tar"]);
        assert!(archives(&dir.path().join("missing")).is_empty());
    }
}

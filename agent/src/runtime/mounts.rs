//! Volume mounts for the process runtime. [`plan`] (pure) maps a container's
//! `volumeMounts` to bind mounts from the pod's volume directories (or a `hostPath`);
//! [`apply`] makes the child enter a private mount namespace before exec (`unshare
//! (CLONE_NEWNS)`, `/` made rslave so nothing propagates back to the host), bind-mount each
//! source onto its `mountPath` (created on the host filesystem when missing) and remount
//! `readOnly` ones read-only. That needs root; [`supported`] says whether this agent can.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Whether mount namespaces and bind mounts are available (the agent runs as root).
pub fn supported() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where volume `v` of a pod lives on the host: its directory under `volumes_dir`, or the
/// `hostPath`. Err names an unsupported volume type.
pub fn volume_source(v: &Volume, volumes_dir: &Path) -> Result<PathBuf, String> {
    if let Some(h) = &v.host_path {
        return Ok(PathBuf::from(&h.path));
    }
    if v.empty_dir.is_some() || projected_as_files(v) {
        return Ok(volumes_dir.join(&v.name));
    }
    Err(format!(
        "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported",
        v.name
    ))
}

/// Whether the volume's files come from the API (configMap, secret, downwardAPI, projected):
/// such volumes are mounted read-only, as the kubelet does.
fn projected_as_files(v: &Volume) -> bool {
    v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some()
}

/// The bind mounts of `container` (in `volumeMounts` order).
pub fn plan(pod: &Pod, container: &Container, volumes_dir: &Path) -> Result<Vec<Mount>, String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == vm.name)
            .ok_or_else(|| format!("volumeMount {:?}: no volume of that name", vm.name))?;
        let mut source = volume_source(v, volumes_dir)?;
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|c| c == "..") {
                return Err(format!("volumeMount {:?}: invalid subPath {sub:?}", vm.name));
            }
            source = source.join(sub);
        }
        if !vm.mount_path.starts_with('/') {
            return Err(format!("volumeMount {:?}: mountPath {:?} is not absolute", vm.name, vm.mount_path));
        }
        let read_only = vm.read_only.unwrap_or(false) || projected_as_files(v);
        mounts.push(Mount { source, target: PathBuf::from(&vm.mount_path), read_only });
    }
    Ok(mounts)
}

fn cstring(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Prepares `cmd` to run in a private mount namespace with `mounts` in place. Mount
/// targets are created now (a file for a file source, a directory otherwise).
pub fn apply(cmd: &mut tokio::process::Command, mounts: &[Mount]) -> std::io::Result<()> {
    let mut specs = Vec::new();
    for m in mounts {
        if m.source.is_file() {
            if let Some(parent) = m.target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !m.target.exists() {
                std::fs::File::create(&m.target)?;
            }
        } else {
            std::fs::create_dir_all(&m.source)?;
            std::fs::create_dir_all(&m.target)?;
        }
        specs.push((cstring(&m.source)?, cstring(&m.target)?, m.read_only));
    }
    let root = c"/";
    // SAFETY: the closure runs in the forked child before exec and only makes syscalls on
    // memory prepared before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            let null = std::ptr::null();
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(null, root.as_ptr(), null, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst, ro) in &specs {
                if libc::mount(src.as_ptr(), dst.as_ptr(), null, libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if *ro {
                    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
                    if libc::mount(null, dst.as_ptr(), null, flags, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Makes `cmd` join the mount namespace `ns` (an open `/proc/{pid}/ns/mnt`) before exec
/// (exec probes see the container's mounts).
pub fn enter_mount_ns(cmd: &mut tokio::process::Command, ns: std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns on an fd opened before the fork; the closure owns the file so the fd
    // stays open until exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_and_container(mounts: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c", "volumeMounts": mounts}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": "/srv/data"}},
                    {"name": "cfg", "configMap": {"name": "settings"}},
                    {"name": "creds", "secret": {"secretName": "s"}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "pvc"}}
                ]
            }
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn plans_bind_mounts() {
        let (pod, c) = pod_and_container(serde_json::json!([
            {"name": "scratch", "mountPath": "/tmp/scratch"},
            {"name": "host", "mountPath": "/data", "readOnly": true},
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "creds", "mountPath": "/etc/creds/token", "subPath": "token"}
        ]));
        let m = plan(&pod, &c, Path::new("/var/pods/u1/volumes")).unwrap();
        let want = |s: &str, t: &str, ro: bool| Mount { source: s.into(), target: t.into(), read_only: ro };
        assert_eq!(
            m,
            vec![
                want("/var/pods/u1/volumes/scratch", "/tmp/scratch", false),
                want("/srv/data", "/data", true),
                want("/var/pods/u1/volumes/cfg", "/etc/app", true),
                want("/var/pods/u1/volumes/creds/token", "/etc/creds/token", true),
            ]
        );
    }

    #[test]
    fn rejects_what_it_cannot_mount() {
        let dir = Path::new("/v");
        let (pod, c) = pod_and_container(serde_json::json!([{"name": "claim", "mountPath": "/x"}]));
        assert!(plan(&pod, &c, dir).unwrap_err().contains("only emptyDir"));
        let (pod, c) = pod_and_container(serde_json::json!([{"name": "nope", "mountPath": "/x"}]));
        assert!(plan(&pod, &c, dir).unwrap_err().contains("no volume"));
        let (pod, c) =
            pod_and_container(serde_json::json!([{"name": "scratch", "mountPath": "/x", "subPath": "../up"}]));
        assert!(plan(&pod, &c, dir).unwrap_err().contains("subPath"));
        let (pod, c) = pod_and_container(serde_json::json!([{"name": "scratch", "mountPath": "rel"}]));
        assert!(plan(&pod, &c, dir).unwrap_err().contains("absolute"));
    }
}

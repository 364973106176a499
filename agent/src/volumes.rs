//! A pod's volumes on the node: `emptyDir` (a directory under the pod's directory),
//! `hostPath` (created for the `*OrCreate` types), and `configMap` / `secret` /
//! `downwardAPI` / `projected` (those three sources combined, plus service-account tokens
//! from [`crate::sa_token`]) as files. Projection is pure ([`project`]: object data + `items` + modes → files); writing
//! ([`write_projection`]) follows the kubelet's atomic writer: the files go to a fresh
//! `..{timestamp}` directory, the `..data` symlink is swapped to it in one rename, and each
//! top-level name is a symlink through `..data` — so a container sees either the old or the
//! new set, and an update is visible through an existing bind mount. [`prepare`] is
//! re-run periodically by the node worker so updates to the objects reach the files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume};
use kube::Api;

use crate::node::ApiAccess;

/// One projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path inside the volume.
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Files for `data` with optional `items` (key → path, mode) and `defaultMode` (0644).
/// A key named in `items` that the object lacks is an error unless `optional`.
pub fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<File>, String> {
    let default_mode = default_mode.unwrap_or(0o644) as u32 & 0o7777;
    let mut files = Vec::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(d) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("configuration key {:?} not found", it.key));
                };
                check_relative(&it.path)?;
                let mode = it.mode.map(|m| m as u32 & 0o7777).unwrap_or(default_mode);
                files.push(File { path: it.path.clone(), data: d.clone(), mode });
            }
        }
        _ => {
            for (k, d) in data {
                files.push(File { path: k.clone(), data: d.clone(), mode: default_mode });
            }
        }
    }
    Ok(files)
}

/// A file path inside a volume must stay inside it.
fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(format!("invalid item path {path:?}"));
    }
    Ok(())
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

fn current_files(dir: &Path, files: &[File]) -> bool {
    let data = dir.join("..data");
    files.iter().all(|f| {
        let p = data.join(&f.path);
        std::fs::read(&p).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
    }) && data.exists()
        && top_level(files).len() == visible_entries(dir).len()
}

fn top_level(files: &[File]) -> std::collections::BTreeSet<String> {
    files.iter().map(|f| f.path.split('/').next().unwrap_or_default().to_string()).collect()
}

fn visible_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(".."))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `files` into `dir` atomically (see the module docs); returns whether anything
/// changed.
pub fn write_projection(dir: &Path, files: &[File]) -> Result<bool, String> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    if current_files(dir, files) {
        return Ok(false);
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let stamp = format!("..{nanos}");
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh).map_err(|e| io("creating", &fresh, e))?;
    for f in files {
        let p = fresh.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&p, &f.data).map_err(|e| io("writing", &p, e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).map_err(|e| io("chmod", &p, e))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(|e| io("linking", &tmp, e))?;
    std::fs::rename(&tmp, dir.join("..data")).map_err(|e| io("renaming", &tmp, e))?;
    let wanted = top_level(files);
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).map_err(|e| io("linking", &link, e))?;
        }
    }
    for name in visible_entries(dir) {
        if !wanted.contains(&name) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    for e in std::fs::read_dir(dir).map_err(|e| io("reading", dir, e))?.filter_map(|e| e.ok()) {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("..") && n != stamp && n != "..data" && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(true)
}

/// Whether the pod has volumes whose content comes from the API.
pub fn has_projected(pod: &Pod) -> bool {
    volumes(pod)
        .iter()
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some() || v.downward_api.is_some())
}

fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default()
}

/// Makes every volume of `pod` exist under `volumes_dir` (hostPath volumes where they are).
/// Err is the `CreateContainerConfigError` message.
pub async fn prepare(api: &ApiAccess, pod: &Pod, volumes_dir: &Path) -> Result<(), String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in volumes(pod) {
        let dir: PathBuf = volumes_dir.join(&v.name);
        if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        } else if let Some(h) = &v.host_path {
            let p = Path::new(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(p).map_err(|e| io("creating", p, e))?,
                "FileOrCreate" if !p.exists() => {
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
                    }
                    std::fs::File::create(p).map_err(|e| io("creating", p, e))?;
                }
                "Directory" if !p.is_dir() => {
                    return Err(format!("hostPath type check failed: {} is not a directory", h.path))
                }
                "File" if !p.is_file() => return Err(format!("hostPath type check failed: {} is not a file", h.path)),
                _ => {}
            }
        } else if let Some(files) = projected_files(api, pod, v, ns).await.transpose() {
            match files {
                Ok(files) => {
                    write_projection(&dir, &files)?;
                }
                // The API is away (an outage, a restarted agent): a volume written before
                // keeps its files, so containers restart as kubelet restarts them, without
                // the API; only a volume never written needs it.
                Err(e) if dir.join("..data").exists() => {
                    tracing::debug!(volume = %v.name, error = %e, "keeping the volume's files: refreshing them failed");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The files of an API-backed volume (`configMap`, `secret`, `downwardAPI`, `projected`);
/// `None` for other kinds.
async fn projected_files(api: &ApiAccess, pod: &Pod, v: &Volume, ns: &str) -> Result<Option<Vec<File>>, String> {
    if let Some(cm) = &v.config_map {
        let optional = cm.optional == Some(true);
        let data = config_map_data(api, ns, &cm.name, optional).await?;
        return project(&data, cm.items.as_deref(), cm.default_mode, optional).map(Some);
    }
    if let Some(s) = &v.secret {
        let optional = s.optional == Some(true);
        let data = secret_data(api, ns, s.secret_name.as_deref().unwrap_or_default(), optional).await?;
        return project(&data, s.items.as_deref(), s.default_mode, optional).map(Some);
    }
    if let Some(d) = &v.downward_api {
        return downward_files(pod, d.items.as_deref().unwrap_or_default(), d.default_mode).map(Some);
    }
    let Some(p) = &v.projected else { return Ok(None) };
    let mut files = Vec::new();
    for source in p.sources.iter().flatten() {
        if let Some(cm) = &source.config_map {
            let optional = cm.optional == Some(true);
            let data = config_map_data(api, ns, &cm.name, optional).await?;
            files.extend(project(&data, cm.items.as_deref(), p.default_mode, optional)?);
        } else if let Some(s) = &source.secret {
            let optional = s.optional == Some(true);
            let data = secret_data(api, ns, &s.name, optional).await?;
            files.extend(project(&data, s.items.as_deref(), p.default_mode, optional)?);
        } else if let Some(d) = &source.downward_api {
            files.extend(downward_files(pod, d.items.as_deref().unwrap_or_default(), p.default_mode)?);
        } else if let Some(sat) = &source.service_account_token {
            let token = api.tokens.token(api, pod, sat).await?;
            let mode = p.default_mode.map(|m| m as u32).unwrap_or(0o600);
            files.push(File { path: sat.path.clone(), data: token.into_bytes(), mode });
        } else {
            return Err(format!("volume {:?}: unsupported projected volume source", v.name));
        }
    }
    Ok(Some(files))
}

/// A ConfigMap's data and binaryData (empty when it is missing and `optional`).
async fn config_map_data(
    api: &ApiAccess,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(api.client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| format!("reading configmap {name}: {e}"))? {
        Some(o) => {
            let mut d: BTreeMap<String, Vec<u8>> =
                o.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            d.extend(o.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            Ok(d)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

/// A Secret's data (empty when it is missing and `optional`).
async fn secret_data(
    api: &ApiAccess,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(api.client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| format!("reading secret {name}: {e}"))? {
        Some(o) => {
            let mut d: BTreeMap<String, Vec<u8>> =
                o.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            d.extend(o.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            Ok(d)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// The files of a downward API volume or projection (pure): each item's `fieldRef` or
/// `resourceFieldRef` value.
pub fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Vec<File>, String> {
    let default_mode = default_mode.unwrap_or(0o644) as u32 & 0o7777;
    let mut files = Vec::new();
    for item in items {
        check_relative(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            // Kubernetes' validation: volume files carry metadata only (an address may
            // change while the file stays).
            let path = f.field_path.as_str();
            let metadata =
                ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"]
                    .contains(&path)
                    || path.starts_with("metadata.labels['")
                    || path.starts_with("metadata.annotations['");
            if !metadata {
                return Err(format!(
                    "downwardAPI item {:?}: fieldRef.fieldPath: Unsupported value: {path:?}: supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"",
                    item.path
                ));
            }
            match path {
                // The whole map, as the kubelet writes it: `key="value"` lines, sorted.
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                _ => crate::runtime::env::field(pod, path, "")?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                .find(|c| c.name == name)
                .ok_or_else(|| format!("resourceFieldRef: no container {name:?} in the pod"))?;
            crate::runtime::env::resource_field(container, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
        } else {
            return Err(format!("downward API file {:?} has neither fieldRef nor resourceFieldRef", item.path));
        };
        let mode = item.mode.map_or(default_mode, |m| m as u32 & 0o7777);
        files.push(File { path: item.path.clone(), data: value.into_bytes(), mode });
    }
    Ok(files)
}

/// A label or annotation map as a downward API file: `key="value"` per line, sorted by key,
/// the value quoted as Go's `%q` does for printable text.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        [("color".to_string(), b"teal".to_vec()), ("size".to_string(), b"xl".to_vec())].into()
    }

    #[test]
    fn projection_with_and_without_items() {
        let all = project(&data(), None, None, false).unwrap();
        assert_eq!(
            all,
            vec![
                File { path: "color".into(), data: b"teal".to_vec(), mode: 0o644 },
                File { path: "size".into(), data: b"xl".to_vec(), mode: 0o644 },
            ]
        );
        let items = [
            KeyToPath { key: "color".into(), path: "conf/color.txt".into(), mode: Some(0o600) },
            KeyToPath { key: "size".into(), path: "size".into(), mode: None },
        ];
        let some = project(&data(), Some(&items), Some(0o440), false).unwrap();
        assert_eq!(some[0], File { path: "conf/color.txt".into(), data: b"teal".to_vec(), mode: 0o600 });
        assert_eq!(some[1].mode, 0o440);
        let missing = [KeyToPath { key: "nope".into(), path: "x".into(), mode: None }];
        assert!(project(&data(), Some(&missing), None, false).is_err());
        assert!(project(&data(), Some(&missing), None, true).unwrap().is_empty());
        let escape = [KeyToPath { key: "color".into(), path: "../x".into(), mode: None }];
        assert!(project(&data(), Some(&escape), None, false).is_err());
    }

    #[test]
    fn atomic_writes_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("cfg");
        let files = project(&data(), None, Some(0o600), false).unwrap();
        assert!(write_projection(&v, &files).unwrap());
        assert_eq!(std::fs::read_to_string(v.join("color")).unwrap(), "teal");
        assert_eq!(std::fs::metadata(v.join("color")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!write_projection(&v, &files).unwrap(), "unchanged content is not rewritten");
        let mut d = data();
        d.insert("color".into(), b"red".to_vec());
        d.remove("size");
        assert!(write_projection(&v, &project(&d, None, None, false).unwrap()).unwrap());
        assert_eq!(std::fs::read_to_string(v.join("color")).unwrap(), "red");
        assert!(!v.join("size").exists());
        let stamps = std::fs::read_dir(&v)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("..1"))
            .count();
        assert_eq!(stamps, 1, "old generations are removed");
    }

    #[test]
    fn downward_files_carry_fields_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "2Mi"}}}]}}))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels/app", "fieldRef": {"fieldPath": "metadata.labels['app']"}, "mode": 0o400},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let files = downward_files(&pod, &items, None).unwrap();
        let got: Vec<(&str, &[u8], u32)> = files.iter().map(|f| (f.path.as_str(), f.data.as_slice(), f.mode)).collect();
        assert_eq!(
            got,
            vec![("name", &b"p"[..], 0o644), ("labels/app", &b"web"[..], 0o400), ("mem", &b"2"[..], 0o644)]
        );
        let escape: Vec<DownwardAPIVolumeFile> =
            serde_json::from_value(serde_json::json!([{"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}}]))
                .unwrap();
        assert!(downward_files(&pod, &escape, None).is_err());
        let whole: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
        ]))
        .unwrap();
        let mut labelled = pod.clone();
        labelled.metadata.labels = Some([("tier".into(), "a \"b\"".into()), ("app".into(), "web".into())].into());
        assert_eq!(downward_files(&labelled, &whole, None).unwrap()[0].data, b"app=\"web\"\ntier=\"a \\\"b\\\"\"");
        let address: Vec<DownwardAPIVolumeFile> =
            serde_json::from_value(serde_json::json!([{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]))
                .unwrap();
        let e = downward_files(&pod, &address, None).unwrap_err();
        assert!(e.contains("Unsupported value: \"status.podIP\""), "{e}");
    }
}

//! Manifests given with `-f`: files, directories (`.yaml`, `.yml`, `.json`; `-R` recursive),
//! `-` for stdin, multi-document YAML and `kind: List`, plus kubectl's namespace rule for
//! objects read from them (manifest namespace, else `-n`, else the context's; a manifest
//! namespace that contradicts an explicit `-n` is an error).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CtlError, Result};

/// One object read from a manifest source.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The file it came from (`STDIN` for `-`), as kubectl names it in errors.
    pub source: String,
    pub object: Value,
}

impl Doc {
    pub fn api_version(&self) -> String {
        self.object["apiVersion"].as_str().unwrap_or_default().to_string()
    }

    pub fn kind(&self) -> String {
        self.object["kind"].as_str().unwrap_or_default().to_string()
    }

    pub fn name(&self) -> Option<String> {
        self.object["metadata"]["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string)
    }
}

/// Reads every `-f` source in order. Directories contribute their `.yaml`/`.yml`/`.json`
/// files in name order (descending into subdirectories with `recursive`).
pub fn read_sources(paths: &[String], recursive: bool) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    let mut stdin_read = false;
    for p in paths {
        if p == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| CtlError::io("reading STDIN", e))?;
            docs.extend(parse_documents(&text, "STDIN")?);
            continue;
        }
        if p.starts_with("http://") || p.starts_with("https://") {
            return Err(CtlError::usage(format!("reading manifests from URLs is not supported: {p}")));
        }
        let path = Path::new(p);
        if !path.exists() {
            return Err(CtlError::usage(format!("the path \"{p}\" does not exist")));
        }
        if path.is_dir() {
            for file in dir_files(path, recursive)? {
                let text = std::fs::read_to_string(&file).map_err(|e| CtlError::io(file.display().to_string(), e))?;
                docs.extend(parse_documents(&text, &file.display().to_string())?);
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| CtlError::io(p.clone(), e))?;
            docs.extend(parse_documents(&text, p)?);
        }
    }
    Ok(docs)
}

/// The manifest files of a directory, sorted by path.
fn dir_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CtlError::io(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                out.extend(dir_files(&entry, true)?);
            }
        } else if is_manifest_file(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// kubectl's file extensions for directory walks.
fn is_manifest_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Parses YAML (or JSON) text holding one or more documents; `kind: List` documents
/// contribute their items. Empty documents are skipped; objects without apiVersion or kind
/// are refused the way kubectl's validation refuses them.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| CtlError::Parse {
            context: source.to_string(),
            message: format!("error converting YAML to JSON: yaml: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err(CtlError::Parse {
                context: source.to_string(),
                message: "error unmarshaling JSON: the document is not an object".into(),
            });
        }
        flatten(value, source, &mut docs)?;
    }
    Ok(docs)
}

fn flatten(value: Value, source: &str, docs: &mut Vec<Doc>) -> Result<()> {
    let kind = value["kind"].as_str().unwrap_or_default();
    if kind == "List" || (kind.ends_with("List") && value["items"].is_array()) {
        for item in value["items"].as_array().cloned().unwrap_or_default() {
            flatten(item, source, docs)?;
        }
        return Ok(());
    }
    let mut missing = Vec::new();
    if value["apiVersion"].as_str().is_none_or(str::is_empty) {
        missing.push("apiVersion not set");
    }
    if value["kind"].as_str().is_none_or(str::is_empty) {
        missing.push("kind not set");
    }
    if !missing.is_empty() {
        let detail = if missing.len() == 1 { missing[0].to_string() } else { format!("[{}]", missing.join(", ")) };
        return Err(CtlError::usage(format!(
            "error validating \"{source}\": error validating data: {detail}; if you choose to ignore these errors, turn validation off with --validate=false"
        )));
    }
    docs.push(Doc { source: source.to_string(), object: value });
    Ok(())
}

/// The namespace an object from a manifest goes to: its own, else `-n`, else the context's
/// (`default_ns`); `None` for cluster-scoped types. An explicit `-n` that contradicts the
/// manifest is kubectl's error.
pub fn namespace_for(object: &Value, namespaced: bool, flag: Option<&str>, default_ns: &str) -> Result<Option<String>> {
    if !namespaced {
        return Ok(None);
    }
    let own = object["metadata"]["namespace"].as_str().filter(|n| !n.is_empty());
    match (own, flag) {
        (Some(own), Some(flag)) if own != flag => Err(CtlError::usage(format!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{flag}\". You must pass '--namespace={own}' to perform this operation."
        ))),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, Some(flag)) => Ok(Some(flag.to_string())),
        (None, None) => Ok(Some(default_ns.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n- {apiVersion: v1, kind: Secret, metadata: {name: c}}\n";
        let docs = parse_documents(text, "m.yaml").unwrap();
        let names: Vec<_> = docs.iter().map(|d| (d.kind(), d.name().unwrap())).collect();
        assert_eq!(
            names,
            vec![("ConfigMap".into(), "a".into()), ("ConfigMap".into(), "b".into()), ("Secret".into(), "c".into())]
        );
        assert_eq!(docs[0].source, "m.yaml");
        // JSON is YAML.
        let docs = parse_documents(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#, "p.json").unwrap();
        assert_eq!(docs[0].object["kind"], "Pod");
    }

    #[test]
    fn invalid_documents_read_like_kubectl() {
        let e = parse_documents("metadata: {name: a}\n", "x.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "error: error validating \"x.yaml\": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false"
        );
        let e = parse_documents("a: [\n", "x.yaml").unwrap_err().to_string();
        assert!(e.starts_with("error: error parsing x.yaml: error converting YAML to JSON: yaml: "), "{e}");
    }

    #[test]
    fn namespace_rules() {
        let with = json!({"metadata": {"namespace": "other"}});
        let without = json!({"metadata": {}});
        assert_eq!(namespace_for(&with, true, None, "default").unwrap(), Some("other".into()));
        assert_eq!(namespace_for(&with, true, Some("other"), "default").unwrap(), Some("other".into()));
        assert_eq!(namespace_for(&without, true, Some("x"), "default").unwrap(), Some("x".into()));
        assert_eq!(namespace_for(&without, true, None, "ctx").unwrap(), Some("ctx".into()));
        assert_eq!(namespace_for(&with, false, Some("x"), "default").unwrap(), None);
        assert_eq!(
            namespace_for(&with, true, Some("default"), "default").unwrap_err().to_string(),
            "error: the namespace from the provided object \"other\" does not match the namespace \"default\". You must pass '--namespace=other' to perform this operation."
        );
    }

    #[test]
    fn directories_walk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n").unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#)
            .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.yml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
        let root = dir.path().display().to_string();
        let names = |docs: Vec<Doc>| docs.into_iter().map(|d| d.name().unwrap()).collect::<Vec<_>>();
        assert_eq!(names(read_sources(std::slice::from_ref(&root), false).unwrap()), vec!["a", "b"]);
        assert_eq!(names(read_sources(&[root], true).unwrap()), vec!["a", "b", "c"]);
        assert_eq!(
            read_sources(&["/nonexistent/x.yaml".into()], false).unwrap_err().to_string(),
            "error: the path \"/nonexistent/x.yaml\" does not exist"
        );
    }
}

//! `berthctl edit`: writes the objects as YAML (or JSON with `-o json`) to a temp file under
//! kubectl's header, runs `$KUBE_EDITOR` / `$EDITOR` (default `vi`) on it, and sends what
//! changed as a merge patch pinned to the resourceVersion that was read. As with kubectl (which
//! sends a patch too), writes by controllers meanwhile (status, their annotations) do not make
//! the edit fail; a concurrent change to a field the user edited is a reported conflict, never
//! silently overwritten. kubectl's loop on errors: invalid objects reopen the editor with the
//! reasons in the header; saving the same content again (or any other failure) ends with the
//! file kept and its path printed.

use std::path::{Path, PathBuf};

use http::Method;
use serde_json::Value;

use crate::cmd::objects::{self, call, Obj, Request, SelectFlags, Selection, MERGE_PATCH};
use crate::error::{CtlError, Result};
use crate::output::{list_of, to_json, to_yaml};
use crate::session::Session;
use crate::Out;

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// Flags of `edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// TYPE NAME… or TYPE/NAME….
    pub resources: Vec<String>,
    /// Filename of the objects to edit.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Output format for the edited file: yaml (default) or json.
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-edit")]
    pub field_manager: String,
}

/// One reason an edit was refused, shown in the reopened file's header.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub head: String,
    pub details: Vec<String>,
}

/// kubectl's header, followed by the reasons of the previous attempt.
pub fn header(reasons: &[Reason]) -> String {
    let mut text = HEADER.to_string();
    for r in reasons {
        let hash = |s: &str| s.replace('\n', "\n# ");
        if r.details.is_empty() {
            text.push_str(&format!("# {}\n", hash(&r.head)));
        } else {
            text.push_str(&format!("# {}:\n", hash(&r.head)));
        }
        for d in &r.details {
            text.push_str(&format!("# * {}\n", hash(d)));
        }
        text.push_str("#\n");
    }
    text
}

/// The text without comment lines (kubectl's ManualStrip).
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') || t.starts_with("#!")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether two saved files say the same thing: the same data when both parse, else the same
/// text without comments.
pub fn same_edit(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => strip_comments(a).trim_end() == strip_comments(b).trim_end(),
    }
}

fn parse(text: &str) -> std::result::Result<Value, String> {
    serde_yaml::from_str::<Value>(&strip_comments(text)).map_err(|e| e.to_string())
}

/// Whether the file has anything but comments and blank lines.
fn has_content(text: &str) -> bool {
    strip_comments(text).lines().any(|l| !l.trim().is_empty())
}

/// The objects as they are written for editing: managedFields hidden, as kubectl does.
fn for_editing(objects: &[Obj]) -> Value {
    let clean = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        o
    };
    if objects.len() == 1 {
        clean(&objects[0].object)
    } else {
        list_of(objects.iter().map(|o| clean(&o.object)).collect())
    }
}

fn render(value: &Value, json: bool) -> String {
    if json {
        to_json(value)
    } else {
        to_yaml(value)
    }
}

/// Runs the editor on `path`, as kubectl does (through the shell, so `EDITOR="code -w"` works).
fn launch_editor(path: &Path) -> Result<()> {
    let editor = std::env::var("KUBE_EDITOR")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "vi".into());
    tracing::debug!(%editor, path = %path.display(), "launching editor");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| CtlError::io(format!("starting the editor {editor:?}"), e))?;
    if !status.success() {
        return Err(CtlError::usage(format!("there was a problem with the editor \"{editor}\"")));
    }
    Ok(())
}

fn temp_file(json: bool) -> PathBuf {
    let ext = if json { "json" } else { "yaml" };
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    std::env::temp_dir().join(format!("kubectl-edit-{}{n}.{ext}", std::process::id()))
}

fn preserved(path: &Path) {
    if path.exists() {
        eprintln!("A copy of your changes has been stored to \"{}\"", path.display());
    }
}

/// Runs `edit`.
pub async fn run(s: &mut Session, args: EditArgs, out: &mut Out) -> Result<()> {
    let json = match args.output.as_str() {
        "yaml" => false,
        "json" => true,
        other => return Err(CtlError::usage(format!("the edit mode doesn't support output format \"{other}\""))),
    };
    let flags =
        SelectFlags { filenames: args.filenames.clone(), selector: args.selector.clone(), ..Default::default() };
    let sel = Selection { args: args.resources.clone(), flags };
    let found = objects::select(s, &sel, true).await?;
    objects::finish(found.errors)?;
    if found.objects.is_empty() {
        return Err(CtlError::usage("no objects passed to edit"));
    }
    let mut pending = found.objects;
    let original = render(&for_editing(&pending), json);
    let path = temp_file(json);
    std::fs::write(&path, format!("{}{original}", header(&[])))
        .map_err(|e| CtlError::io(path.display().to_string(), e))?;
    let mut previous: Option<String> = None;
    loop {
        launch_editor(&path)?;
        let edited = std::fs::read_to_string(&path).map_err(|e| CtlError::io(path.display().to_string(), e))?;
        if let Some(prev) = &previous {
            if same_edit(prev, &edited) {
                preserved(&path);
                return Err(CtlError::usage("Edit cancelled, no valid changes were saved."));
            }
        }
        if previous.is_none() && same_edit(&original, &edited) {
            let _ = std::fs::remove_file(&path);
            eprintln!("Edit cancelled, no changes made.");
            return Ok(());
        }
        if !has_content(&edited) {
            let _ = std::fs::remove_file(&path);
            eprintln!("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        let parsed = match parse(&edited) {
            Ok(v) => v,
            Err(e) => {
                let reasons = [Reason { head: format!("The edited file had a syntax error: {e}"), details: vec![] }];
                rewrite(&path, &reasons, &strip_comments(&edited))?;
                previous = Some(edited);
                continue;
            }
        };
        let items = match parsed["kind"].as_str() {
            Some("List") => parsed["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![parsed],
        };
        let mut reasons = Vec::new();
        let mut failed = Vec::new();
        let mut retryable = false;
        let mut not_found = false;
        if !items.iter().all(|i| pending.iter().any(|o| same_identity(i, &o.object))) {
            preserved(&path);
            return Err(CtlError::usage("At least one of apiVersion, kind and name was changed"));
        }
        for obj in &pending {
            let Some(edited_obj) = items.iter().find(|i| same_identity(i, &obj.object)) else {
                continue; // removed from the file: kubectl leaves it alone
            };
            if same_edit(&to_yaml(edited_obj), &to_yaml(&for_editing(std::slice::from_ref(obj)))) {
                crate::emit(out, &format!("{} skipped\n", obj.type_name()))?;
                continue;
            }
            let resource = obj.info.qualified_plural();
            match submit(s, obj, edited_obj, &args.field_manager).await {
                Ok(_) => crate::emit(out, &format!("{} edited\n", obj.type_name()))?,
                Err(CtlError::Server { code: 422, message, .. }) => {
                    eprintln!("error: {resource} \"{}\" is invalid", obj.name);
                    reasons.push(Reason {
                        head: format!("{resource} \"{}\" was not valid", obj.name),
                        details: vec![message],
                    });
                    failed.push((obj.clone(), edited_obj.clone()));
                }
                Err(e) if e.is_not_found() => {
                    eprintln!("error: {resource} \"{}\" could not be found on the server", obj.name);
                    not_found = true;
                }
                Err(CtlError::Server { message, .. }) => {
                    eprintln!("error: {resource} \"{}\" could not be patched: {message}", obj.name);
                    retryable = true;
                }
                Err(e) => return Err(e),
            }
        }
        if retryable {
            preserved(&path);
            return Err(CtlError::Exit(1));
        }
        if not_found {
            eprintln!("The edits you made on deleted resources have been saved to \"{}\"", path.display());
            return Err(CtlError::Exit(1));
        }
        if failed.is_empty() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        // Reopen with only the objects that still need fixing (as edited), the reasons on top.
        let edited: Vec<Value> = failed.iter().map(|(_, e)| e.clone()).collect();
        let body = render(&if edited.len() == 1 { edited[0].clone() } else { list_of(edited) }, json);
        rewrite(&path, &reasons, &body)?;
        previous = Some(std::fs::read_to_string(&path).map_err(|e| CtlError::io(path.display().to_string(), e))?);
        pending = failed.into_iter().map(|(o, _)| o).collect();
    }
}

/// How often an edit is re-sent when only fields it does not touch changed meanwhile.
const MAX_SUBMITS: usize = 5;

/// Sends the user's changes: a JSON merge patch from the object as shown to the object as
/// edited, pinned to the resourceVersion that was shown. When the object changed meanwhile
/// (409), the patch is re-sent only if none of the fields it sets changed (a controller updating
/// status or its own annotations is no reason to fail); otherwise the conflict is reported.
async fn submit(s: &mut Session, obj: &Obj, edited: &Value, manager: &str) -> Result<Value> {
    let shown = for_editing(std::slice::from_ref(obj));
    let mut patch = merge_diff(&shown, edited);
    // Status is written through its own subresource; the server ignores it here, so it must
    // not make a status update by a controller look like a conflicting edit either.
    if let Some(p) = patch.as_object_mut() {
        p.remove("status");
    }
    let mut rv = obj.object["metadata"]["resourceVersion"].clone();
    for attempt in 1..=MAX_SUBMITS {
        let mut pinned = patch.clone();
        pinned["metadata"]["resourceVersion"] = rv.clone();
        let req = Request::new(Method::PATCH, obj.path()).param("fieldManager", manager).body(MERGE_PATCH, pinned);
        match call(s, req).await {
            Err(e) if e.is_conflict() && attempt < MAX_SUBMITS => {
                let live = call(s, Request::get(obj.path())).await?;
                if !untouched(&patch, &shown, &live) {
                    return Err(e);
                }
                rv = live["metadata"]["resourceVersion"].clone();
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}

/// RFC 7386 merge patch turning `from` into `to` (lists are replaced whole).
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    let (Some(f), Some(t)) = (from.as_object(), to.as_object()) else {
        return to.clone();
    };
    let mut patch = serde_json::Map::new();
    for (k, v) in t {
        match f.get(k) {
            Some(old) if old == v => {}
            Some(old) if old.is_object() && v.is_object() => {
                patch.insert(k.clone(), merge_diff(old, v));
            }
            _ => {
                patch.insert(k.clone(), v.clone());
            }
        }
    }
    for k in f.keys().filter(|k| !t.contains_key(*k)) {
        patch.insert(k.clone(), Value::Null);
    }
    Value::Object(patch)
}

/// True when every field the patch sets still has, in `live`, the value it had in `shown`.
pub fn untouched(patch: &Value, shown: &Value, live: &Value) -> bool {
    let Some(p) = patch.as_object() else { return shown == live };
    p.iter().all(|(k, v)| {
        let (a, b) = (shown.get(k).unwrap_or(&Value::Null), live.get(k).unwrap_or(&Value::Null));
        if v.is_object() && a.is_object() {
            untouched(v, a, b)
        } else {
            a == b
        }
    })
}

fn rewrite(path: &Path, reasons: &[Reason], body: &str) -> Result<()> {
    std::fs::write(path, format!("{}{body}", header(reasons))).map_err(|e| CtlError::io(path.display().to_string(), e))
}

/// Same apiVersion, kind and name (the edit may not rename or retype an object).
fn same_identity(a: &Value, b: &Value) -> bool {
    a["apiVersion"] == b["apiVersion"] && a["kind"] == b["kind"] && a["metadata"]["name"] == b["metadata"]["name"]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_with_reasons_is_kubectls() {
        assert_eq!(
            header(&[Reason {
                head: "deployments.apps \"web\" was not valid".into(),
                details: vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0".into()],
            }]),
            "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
# deployments.apps \"web\" was not valid:
# * spec.replicas: Invalid value: -1: must be greater than or equal to 0
#
"
        );
        assert!(header(&[Reason { head: "The edited file had a syntax error: x".into(), details: vec![] }])
            .ends_with("#\n# The edited file had a syntax error: x\n#\n"));
    }

    #[test]
    fn comparisons_ignore_comments_and_formatting() {
        let a = "# comment\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
        let b = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n";
        assert!(same_edit(a, b));
        assert!(!same_edit(a, "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n"));
        assert!(!has_content("# only\n#comments\n\n"));
        assert!(same_edit("# x\na: [\n", "a: [\n"));
    }

    #[test]
    fn edits_become_merge_patches_that_survive_unrelated_writes() {
        let shown = json!({"metadata": {"name": "web", "uid": "u", "resourceVersion": "5", "annotations": {"rev": "1"}},
                           "spec": {"replicas": 3, "template": {"image": "a"}}, "status": {"ready": 1}});
        let mut edited = shown.clone();
        edited["spec"]["template"]["image"] = json!("b");
        edited["metadata"]["annotations"].as_object_mut().unwrap().remove("rev");
        let patch = merge_diff(&shown, &edited);
        assert_eq!(patch, json!({"metadata": {"annotations": {"rev": null}}, "spec": {"template": {"image": "b"}}}));
        // A status update meanwhile does not touch the edited fields.
        let mut live = shown.clone();
        live["status"]["ready"] = json!(3);
        live["metadata"]["resourceVersion"] = json!("6");
        assert!(untouched(&patch, &shown, &live));
        // Someone else changed the image: a real conflict.
        live["spec"]["template"]["image"] = json!("c");
        assert!(!untouched(&patch, &shown, &live));
    }
}

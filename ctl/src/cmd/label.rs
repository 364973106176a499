//! `berthctl label` and `berthctl annotate`: `key=value` / `key-` edits on objects picked by
//! `TYPE NAME…`, `TYPE/NAME`, `-f`, `-l` or `--all`, refusing to change an existing value
//! without `--overwrite` (kubectl's messages), `--list`, `--resource-version` as a
//! precondition. The change is computed by pure functions and sent as a JSON merge patch of
//! just the changed keys.

use std::collections::BTreeMap;

use berth_proto::model::well_known;
use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, finish, DryRun, DryRunArg, Obj, Request, SelectFlags, Selection, MERGE_PATCH};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Which metadata map the command edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotation",
        }
    }
}

/// Flags shared by `label` and `annotate`.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// TYPE NAME… or TYPE/NAME…, followed by KEY=VALUE and KEY- edits.
    pub args: Vec<String>,
    /// Which objects: -f/-R, -l, --field-selector, --all, -A.
    #[command(flatten)]
    pub select: SelectFlags,
    /// Allow existing keys to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the keys and values (after the edits) instead of changing anything.
    #[arg(long)]
    pub list: bool,
    /// Only update if the object's resourceVersion is still this.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Output format: name, yaml, json or jsonpath=….
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Name of the manager used to track field ownership.
    #[arg(long)]
    pub field_manager: Option<String>,
}

/// `annotate` takes the same flags.
pub type AnnotateArgs = LabelArgs;

/// The edits of one command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Parses `key=value` / `key-` arguments with kubectl's rules and messages.
pub fn parse_changes(field: Field, specs: &[String]) -> Result<Changes> {
    let mut changes = Changes::default();
    for spec in specs {
        if spec.contains('=') {
            let (key, value) = match field {
                Field::Labels => {
                    let parts: Vec<&str> = spec.split('=').collect();
                    if parts.len() != 2 {
                        return Err(CtlError::usage(format!("invalid label spec: {spec}")));
                    }
                    (parts[0], parts[1])
                }
                Field::Annotations => match spec.split_once('=') {
                    Some((k, v)) if !k.is_empty() => (k, v),
                    _ => return Err(CtlError::usage(format!("invalid annotation format: {spec}"))),
                },
            };
            changes.set.insert(key.to_string(), value.to_string());
        } else if let Some(key) = spec.strip_suffix('-') {
            changes.remove.push(key.to_string());
        } else {
            return Err(CtlError::usage(format!("unknown {} spec: {spec}", field.noun())));
        }
    }
    if changes.remove.iter().any(|k| changes.set.contains_key(k)) {
        let what = match field {
            Field::Labels => "a label",
            Field::Annotations => "an annotation",
        };
        return Err(CtlError::usage(format!("can not both modify and remove {what} in the same command")));
    }
    Ok(changes)
}

/// The map after the edits, and the removed keys that were not there. Without `overwrite`,
/// changing an existing key to a different value is kubectl's error.
pub fn apply_changes(
    field: Field,
    current: &BTreeMap<String, String>,
    changes: &Changes,
    overwrite: bool,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    if !overwrite {
        let clashes: Vec<String> = changes
            .set
            .iter()
            .filter_map(|(k, v)| {
                let have = current.get(k)?;
                // The change-cause annotation may always be overwritten.
                (have != v && !(field == Field::Annotations && k == well_known::ANNOTATION_CHANGE_CAUSE))
                    .then(|| format!("'{k}' already has a value ({have})"))
            })
            .collect();
        if !clashes.is_empty() {
            return Err(CtlError::usage(match field {
                Field::Labels => {
                    let each: Vec<String> = clashes.iter().map(|c| format!("{c}, and --overwrite is false")).collect();
                    if each.len() == 1 {
                        each[0].clone()
                    } else {
                        format!("[{}]", each.join(", "))
                    }
                }
                Field::Annotations => {
                    format!(
                        "--overwrite is false but found the following declared annotation(s): {}",
                        clashes.join("; ")
                    )
                }
            }));
        }
    }
    let mut next = current.clone();
    next.extend(changes.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut missing = Vec::new();
    for k in &changes.remove {
        if next.remove(k).is_none() {
            missing.push(k.clone());
        }
    }
    Ok((next, missing))
}

/// kubectl's verdict: `labeled`, `unlabeled` (something removed and nothing overwritten) or
/// `not labeled`; `annotate` always says `annotated`.
pub fn verdict(
    field: Field,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    overwrite: bool,
) -> &'static str {
    if field == Field::Annotations {
        return "annotated";
    }
    if old == new {
        return "not labeled";
    }
    let len = |m: &BTreeMap<String, String>| serde_json::to_string(m).map(|s| s.len()).unwrap_or(0);
    if !overwrite && len(new) < len(old) {
        "unlabeled"
    } else {
        "labeled"
    }
}

/// The merge patch turning `old` into `new` (only changed keys; removed ones as null).
pub fn merge_patch(
    field: Field,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    rv: Option<&str>,
) -> Value {
    let mut changed = serde_json::Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            changed.insert(k.clone(), json!(v));
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        changed.insert(k.clone(), Value::Null);
    }
    let mut metadata = json!({ field.key(): changed });
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({ "metadata": metadata })
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// Runs `label`.
pub async fn run_label(s: &mut Session, args: LabelArgs, out: &mut Out) -> Result<()> {
    run_field(s, Field::Labels, args, out).await
}

/// Runs `annotate`.
pub async fn run_annotate(s: &mut Session, args: AnnotateArgs, out: &mut Out) -> Result<()> {
    run_field(s, Field::Annotations, args, out).await
}

async fn run_field(s: &mut Session, field: Field, args: LabelArgs, out: &mut Out) -> Result<()> {
    let dry = args.dry_run.get()?;
    let format = objects::output_format(args.output.as_deref())?;
    let (resources, specs) = objects::split_edits(&args.args);
    let changes = parse_changes(field, &specs)?;
    if changes.set.is_empty() && changes.remove.is_empty() && !args.list {
        return Err(CtlError::usage(format!("at least one {} update is required", field.noun())));
    }
    let sel = Selection { args: resources, flags: args.select.clone() };
    let found = objects::select(s, &sel, true).await?;
    let single = found.objects.len() == 1;
    let manager = args.field_manager.clone().unwrap_or_else(|| format!("kubectl-{}", field.noun()));
    let mut errors = found.errors;
    for obj in found.objects {
        if let Err(e) = one(s, field, &args, &changes, &obj, single, dry, format.as_ref(), &manager, out).await {
            errors.push(e);
        }
    }
    finish(errors)
}

#[allow(clippy::too_many_arguments)]
async fn one(
    s: &mut Session,
    field: Field,
    args: &LabelArgs,
    changes: &Changes,
    obj: &Obj,
    single: bool,
    dry: DryRun,
    format: Option<&crate::output::OutputFormat>,
    manager: &str,
    out: &mut Out,
) -> Result<()> {
    let old = string_map(&obj.object["metadata"][field.key()]);
    let (new, missing) = apply_changes(field, &old, changes, args.overwrite)?;
    if args.list {
        let indent = if single {
            ""
        } else {
            let group = obj.info.group.clone();
            crate::emit(out, &format!("Listing {} for {}.{group}/{}:\n", field.key(), obj.info.kind, obj.name))?;
            " "
        };
        let text: String = new.iter().map(|(k, v)| format!("{indent}{k}={v}\n")).collect();
        return crate::emit(out, &text);
    }
    if field == Field::Labels {
        for k in &missing {
            crate::emit(out, &format!("label \"{k}\" not found.\n"))?;
        }
    }
    let mut result = obj.object.clone();
    if old != new || args.resource_version.is_some() {
        let patch = merge_patch(field, &old, &new, args.resource_version.as_deref());
        if dry == DryRun::Client {
            result["metadata"][field.key()] = json!(new);
        } else {
            let req = Request::new(Method::PATCH, obj.path())
                .param("fieldManager", manager)
                .body(MERGE_PATCH, patch)
                .dry_run(dry);
            result = call(s, req).await?;
        }
    }
    let message = format!("{} {}{}", obj.type_name(), verdict(field, &old, &new, args.overwrite), dry.suffix());
    objects::report(out, format, obj, &result, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn specs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parsing_follows_kubectl() {
        let c = parse_changes(Field::Labels, &specs(&["a=b", "c-", "example.com/k-"])).unwrap();
        assert_eq!(c.set, map(&[("a", "b")]));
        assert_eq!(c.remove, vec!["c", "example.com/k"]);
        assert_eq!(
            parse_changes(Field::Labels, &specs(&["a=b=c"])).unwrap_err().to_string(),
            "error: invalid label spec: a=b=c"
        );
        // Annotation values may contain '='.
        let c = parse_changes(Field::Annotations, &specs(&["cmd=a=b"])).unwrap();
        assert_eq!(c.set, map(&[("cmd", "a=b")]));
        assert_eq!(
            parse_changes(Field::Labels, &specs(&["a=b", "a-"])).unwrap_err().to_string(),
            "error: can not both modify and remove a label in the same command"
        );
    }

    #[test]
    fn overwrite_rules_and_messages() {
        let current = map(&[("a", "b"), ("app", "x")]);
        let change = parse_changes(Field::Labels, &specs(&["a=c"])).unwrap();
        assert_eq!(
            apply_changes(Field::Labels, &current, &change, false).unwrap_err().to_string(),
            "error: 'a' already has a value (b), and --overwrite is false"
        );
        assert_eq!(
            apply_changes(Field::Annotations, &current, &change, false).unwrap_err().to_string(),
            "error: --overwrite is false but found the following declared annotation(s): 'a' already has a value (b)"
        );
        let (new, missing) = apply_changes(Field::Labels, &current, &change, true).unwrap();
        assert_eq!(new, map(&[("a", "c"), ("app", "x")]));
        assert!(missing.is_empty());
        assert_eq!(verdict(Field::Labels, &current, &new, true), "labeled");
        // Setting the same value is not a clash, and changes nothing.
        let same = parse_changes(Field::Labels, &specs(&["a=b"])).unwrap();
        let (new, _) = apply_changes(Field::Labels, &current, &same, false).unwrap();
        assert_eq!(verdict(Field::Labels, &current, &new, false), "not labeled");
        // Removal.
        let rm = parse_changes(Field::Labels, &specs(&["a-", "q-"])).unwrap();
        let (new, missing) = apply_changes(Field::Labels, &current, &rm, false).unwrap();
        assert_eq!(new, map(&[("app", "x")]));
        assert_eq!(missing, vec!["q"]);
        assert_eq!(verdict(Field::Labels, &current, &new, false), "unlabeled");
        assert_eq!(verdict(Field::Annotations, &current, &current, false), "annotated");
    }

    #[test]
    fn patches_carry_only_the_changes() {
        let old = map(&[("a", "b"), ("keep", "1"), ("gone", "x")]);
        let new = map(&[("a", "c"), ("keep", "1"), ("add", "y")]);
        assert_eq!(
            merge_patch(Field::Labels, &old, &new, None),
            json!({"metadata": {"labels": {"a": "c", "add": "y", "gone": null}}})
        );
        assert_eq!(
            merge_patch(Field::Annotations, &old, &old, Some("42")),
            json!({"metadata": {"annotations": {}, "resourceVersion": "42"}})
        );
    }
}

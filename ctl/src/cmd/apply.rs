//! `berthctl apply -f` and `berthctl create` (`-f`, `deployment NAME --image…`, `namespace NAME`).
//!
//! How `apply` works, and why. kubectl's default is client-side apply: it stores the manifest in
//! the `kubectl.kubernetes.io/last-applied-configuration` annotation and sends a three-way
//! strategic merge patch (last applied → manifest, against the live object). Computing that patch
//! needs the strategic-merge metadata of every built-in type (which lists merge by which key),
//! which lives in the server. Berth's server already implements server-side apply with that
//! metadata, so `apply` sends the manifest as a server-side apply under kubectl's client-side
//! manager name (`kubectl-client-side-apply`, with `force=true`, because client-side apply never
//! conflicts), and keeps the parts of client-side apply users can see:
//! - the manifest is recorded in `last-applied-configuration`, byte-for-byte as kubectl writes it
//!   (compact JSON, sorted keys, `namespace` filled in, `annotations: {}`), so `kubectl apply`,
//!   `apply view-last-applied` and diffs keep working;
//! - fields removed from the manifest are removed from the object: server-side apply drops the
//!   list items this manager applied before, and the previous annotation is diffed against the
//!   manifest (through maps, and into keyed list items matched by their merge key) to send
//!   explicit `null`s, so a field removed from the manifest goes even when another writer
//!   touched it since (client-side apply's three-way rule);
//! - fields set by others and never in the manifest (replicas scaled by an autoscaler, server
//!   defaults, controller annotations) stay, as with kubectl;
//! - the result reads `created`, `configured` or `unchanged`: unchanged when the live object
//!   already holds everything the apply sends (when kubectl's patch would be empty), decided
//!   from the object read before the write so controllers' status updates do not count; with
//!   kubectl's missing-annotation warning.
//!
//! Visible difference: `metadata.managedFields` shows the manager with operation `Apply`
//! instead of `Update`. `--server-side` is real server-side apply (manager `kubectl`, conflicts
//! reported unless `--force-conflicts`, message `serverside-applied`).

use http::Method;
use serde_json::{json, Map, Value};

use crate::cmd::manifest::{self, Doc};
use crate::cmd::objects::{self, call, finish, get_opt, DryRun, DryRunArg, Obj, Request, APPLY_PATCH};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// The annotation client-side apply keeps the last applied manifest in.
pub use berth_proto::model::well_known::ANNOTATION_LAST_APPLIED as LAST_APPLIED;
/// kubectl's field manager for client-side apply.
const CSA_MANAGER: &str = "kubectl-client-side-apply";

/// Flags of `apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The files, directories or URLs that contain the configuration to apply (`-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Process the directory used in -f, --filename recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Output format: name, yaml, json or jsonpath=….
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Run the apply on the server instead of the client.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: take over fields owned by other managers.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long)]
    pub field_manager: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Accepted for kubectl compatibility (the server validates every object).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "strict")]
    pub validate: Option<String>,
}

/// What happened to one applied object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    ServerSideApplied,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::ServerSideApplied => "serverside-applied",
        }
    }
}

/// Runs `apply`.
pub async fn run_apply(s: &mut Session, args: ApplyArgs, out: &mut Out) -> Result<()> {
    let dry = args.dry_run.get()?;
    let format = objects::output_format(args.output.as_deref())?;
    let docs = manifest::read_sources(&args.filenames, args.recursive)?;
    if docs.is_empty() {
        return Err(CtlError::usage("no objects passed to apply"));
    }
    let mut errors = Vec::new();
    let mut printed = Vec::new();
    for doc in docs {
        match apply_one(s, &args, dry, &doc).await {
            Ok((obj, object, outcome)) => {
                if format.is_none() {
                    crate::emit(out, &format!("{} {}{}\n", obj.type_name(), outcome.word(), dry.suffix()))?;
                } else {
                    printed.push((obj.info.clone(), object));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some(format) = format {
        if !printed.is_empty() {
            let single = printed.len() == 1;
            crate::emit(out, &crate::output::render_objects(&format, &printed, single)?)?;
        }
    }
    finish(errors)
}

/// Resolves a manifest's type, namespace and name.
async fn locate(s: &mut Session, doc: &Doc) -> Result<Obj> {
    let resolver = s.resolver().await?;
    let info = resolver.for_kind(&doc.api_version(), &doc.kind())?.clone();
    let default_ns = s.namespace()?;
    let namespace = manifest::namespace_for(&doc.object, info.namespaced, s.namespace_flag(), &default_ns)?;
    let name = doc.name().ok_or_else(|| {
        CtlError::usage(format!("error when retrieving current configuration of:\nResource: \"{}\", GroupVersionKind: \"{}, Kind={}\"\nName: \"\", Namespace: \"{}\"\nfrom server for: \"{}\": resource name may not be empty", info.qualified_plural(), info.api_version(), info.kind, namespace.clone().unwrap_or_default(), doc.source))
    })?;
    Ok(Obj { info, namespace, name, object: doc.object.clone(), source: Some(doc.source.clone()) })
}

async fn apply_one(s: &mut Session, args: &ApplyArgs, dry: DryRun, doc: &Doc) -> Result<(Obj, Value, Outcome)> {
    let obj = locate(s, doc).await?;
    let source = doc.source.clone();
    let live = get_opt(s, &obj.info, obj.namespace.as_deref(), &obj.name).await?;
    let manifest = with_namespace(&doc.object, obj.namespace.as_deref());

    if args.server_side {
        let manager = args.field_manager.clone().unwrap_or_else(|| "kubectl".into());
        if dry == DryRun::Client {
            return Ok((obj, manifest, Outcome::ServerSideApplied));
        }
        let mut req = Request::new(Method::PATCH, obj.path())
            .param("fieldManager", manager)
            .body(APPLY_PATCH, manifest)
            .dry_run(dry);
        if args.force_conflicts {
            req = req.param("force", "true");
        }
        let result = call(s, req).await.map_err(|e| ssa_error(e, &source))?;
        return Ok((obj, result, Outcome::ServerSideApplied));
    }

    let previous = live
        .as_ref()
        .and_then(|l| l["metadata"]["annotations"][LAST_APPLIED].as_str())
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if let Some(live) = &live {
        if live["metadata"]["annotations"][LAST_APPLIED].is_null() && dry != DryRun::Client {
            eprintln!(
                "Warning: resource {}/{} is missing the {LAST_APPLIED} annotation which is required by kubectl apply. kubectl apply should only be used on resources created declaratively by either kubectl create --save-config or kubectl apply. The missing annotation will be patched automatically.",
                obj.info.plural, obj.name
            );
        }
    }
    let body = apply_body(&manifest, previous.as_ref());
    if dry == DryRun::Client {
        let outcome = if live.is_some() { Outcome::Configured } else { Outcome::Created };
        return Ok((obj, body, outcome));
    }
    // Decided from what was read, not from the answer: controllers keep writing status and
    // their own annotations, which must not turn `unchanged` into `configured`.
    let outcome = outcome(live.as_ref(), &body);
    let manager = args.field_manager.clone().unwrap_or_else(|| CSA_MANAGER.into());
    let req = Request::new(Method::PATCH, obj.path())
        .param("fieldManager", manager)
        .param("force", "true")
        .body(APPLY_PATCH, body)
        .dry_run(dry);
    let verb = if live.is_some() { "patching" } else { "creating" };
    let result = call(s, req).await.map_err(|e| with_context(e, verb, &source))?;
    Ok((obj, result, outcome))
}

/// created / configured / unchanged: unchanged when the live object already has everything
/// the apply sends (kubectl's three-way patch is empty in the same cases: nothing in the
/// manifest differs from the object, and nothing removed from the manifest is still there).
pub fn outcome(live: Option<&Value>, body: &Value) -> Outcome {
    match live {
        None => Outcome::Created,
        Some(live) if covers(live, body) => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    }
}

/// Whether `live` already holds `want`: every field of `want` with the same value (`null`:
/// absent), lists item by item (keyed lists matched by merge key, with no extra items).
fn covers(live: &Value, want: &Value) -> bool {
    match want {
        Value::Null => live.is_null(),
        Value::Object(w) => {
            let empty = Map::new();
            let l = match live {
                Value::Object(l) => l,
                Value::Null if w.values().all(Value::is_null) => &empty,
                _ => return false,
            };
            w.iter().all(|(k, v)| covers(l.get(k).unwrap_or(&Value::Null), v))
        }
        Value::Array(w) => {
            let Some(l) = live.as_array() else { return false };
            if l.len() != w.len() {
                return false;
            }
            match merge_key(l, w) {
                Some(key) => w.iter().all(|item| l.iter().any(|li| li[key] == item[key] && covers(li, item))),
                None => l.iter().zip(w).all(|(li, wi)| covers(li, wi)),
            }
        }
        Value::Number(w) => live.as_f64().is_some_and(|l| Some(l) == w.as_f64()),
        other => live == other,
    }
}

/// The manifest with `metadata.namespace` filled in (kubectl records it that way).
fn with_namespace(object: &Value, namespace: Option<&str>) -> Value {
    let mut o = object.clone();
    if let (Some(ns), Some(meta)) = (namespace, o.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("namespace".into(), json!(ns));
    }
    o
}

/// kubectl's `last-applied-configuration` value for a manifest: the manifest without that
/// annotation (and with an `annotations` map, possibly empty), as compact JSON with sorted
/// keys, Go's HTML escaping and a trailing newline.
pub fn last_applied(manifest: &Value) -> String {
    let mut m = manifest.clone();
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.remove(LAST_APPLIED);
        } else {
            *annotations = json!({});
        }
    }
    let text = serde_json::to_string(&m).expect("a JSON value serializes");
    // Go's encoding/json escapes these; keep the annotation identical to kubectl's.
    let mut escaped = text.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    escaped.push('\n');
    escaped
}

/// The server-side apply body for a client-side-apply style `apply`: the manifest, its
/// `last-applied-configuration` annotation, and explicit nulls for map fields that were in the
/// previously applied manifest but are not in this one.
pub fn apply_body(manifest: &Value, previous: Option<&Value>) -> Value {
    let mut body = manifest.clone();
    if let Some(prev) = previous {
        let mut prev = prev.clone();
        // The annotation map itself is always sent; only its entries can be removed.
        if let Some(a) = prev.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
        }
        add_removals(&prev, &mut body);
    }
    let annotation = last_applied(manifest);
    let meta = body.as_object_mut().and_then(|o| o.entry("metadata").or_insert_with(|| json!({})).as_object_mut());
    if let Some(meta) = meta {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations.as_object_mut().expect("just made an object").insert(LAST_APPLIED.into(), json!(annotation));
    }
    body
}

/// The merge keys of the keyed lists of built-in types (containers and env by `name`,
/// container ports by `containerPort`, service ports by `port`, volume mounts by `mountPath`…).
const MERGE_KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "devicePath", "ip", "topologyKey"];

/// The key that identifies the items of both lists, when every item has it.
fn merge_key(previous: &[Value], current: &[Value]) -> Option<&'static str> {
    MERGE_KEYS.iter().copied().find(|k| {
        previous.iter().chain(current).all(|item| item.get(*k).is_some_and(|v| v.is_string() || v.is_number()))
    })
}

/// Sets `null` in `current` for every key of `previous` it lacks, descending through maps
/// present in both and into the items of keyed lists present in both (matched by their merge
/// key). Whole list items that went away are left to server-side apply, which drops the items
/// this manager applied before.
fn add_removals(previous: &Value, current: &mut Value) {
    match (previous, current) {
        (Value::Object(prev), Value::Object(cur)) => {
            for (key, prev_value) in prev {
                match cur.get_mut(key) {
                    None => {
                        cur.insert(key.clone(), Value::Null);
                    }
                    Some(cur_value) => add_removals(prev_value, cur_value),
                }
            }
        }
        (Value::Array(prev), Value::Array(cur)) => {
            let Some(key) = merge_key(prev, cur) else { return };
            for p in prev {
                if let Some(c) = cur.iter_mut().find(|c| c[key] == p[key]) {
                    add_removals(p, c);
                }
            }
        }
        _ => {}
    }
}

/// Prefixes a server error with kubectl's `error when creating "FILE": ` context.
pub fn with_context(e: CtlError, verb: &str, source: &str) -> CtlError {
    match e {
        CtlError::Server { reason, code, message } => {
            CtlError::Server { reason, code, message: format!("error when {verb} \"{source}\": {message}") }
        }
        other => other,
    }
}

/// A server-side apply conflict, explained the way kubectl (1.33) explains it.
fn ssa_error(e: CtlError, source: &str) -> CtlError {
    match e {
        CtlError::Server { code: 409, message, .. } if message.contains("Apply failed") => {
            // The conflict list starts at "Apply failed"; anything before it is the generic
            // "Operation cannot be fulfilled" preamble.
            let conflicts = &message[message.find("Apply failed").unwrap_or(0)..];
            CtlError::usage(format!("{conflicts}\n{SSA_CONFLICT_HELP}"))
        }
        other => with_context(other, "patching", source),
    }
}

/// kubectl's advice after a server-side apply conflict.
const SSA_CONFLICT_HELP: &str = "Please review the fields above--they currently have other managers. Here
are the ways you can resolve this warning:
* If you intend to manage all of these fields, please re-run the apply
  command with the `--force-conflicts` flag.
* If you do not intend to manage all of the fields, please edit your
  manifest to remove references to the fields that should keep their
  current managers.
* You may co-own fields by updating your manifest to match the existing
  value; in this case, you'll become the manager if the other manager(s)
  stop managing the field (remove it from their configuration).
See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts";

/// Flags of `create`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
    /// Filename, directory, or URL to files to use to create the resource (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Process the directory used in -f, --filename recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Record the configuration in the last-applied-configuration annotation (for later `apply`).
    #[arg(long)]
    pub save_config: bool,
    #[command(flatten)]
    pub common: CreateCommon,
}

/// Flags every form of `create` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateCommon {
    /// Output format: name, yaml, json or jsonpath=….
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-create")]
    pub field_manager: String,
}

/// `create deployment` / `create namespace`.
#[derive(Debug, clap::Subcommand)]
pub enum CreateWhat {
    /// Create a deployment with the specified name.
    #[command(alias = "deploy")]
    Deployment(CreateDeploymentArgs),
    /// Create a namespace with the specified name.
    #[command(alias = "ns")]
    Namespace(CreateNamespaceArgs),
}

/// Flags of `create deployment`.
#[derive(Debug, clap::Args)]
pub struct CreateDeploymentArgs {
    pub name: String,
    /// Image names to run (one container per image).
    #[arg(long, required = true)]
    pub image: Vec<String>,
    /// Number of replicas to create.
    #[arg(short = 'r', long, default_value_t = 1)]
    pub replicas: i64,
    /// The containerPort that this deployment exposes.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub port: i64,
    #[command(flatten)]
    pub common: CreateCommon,
}

/// Flags of `create namespace`.
#[derive(Debug, clap::Args)]
pub struct CreateNamespaceArgs {
    pub name: String,
    #[command(flatten)]
    pub common: CreateCommon,
}

/// Runs `create`.
pub async fn run_create(s: &mut Session, args: CreateArgs, out: &mut Out) -> Result<()> {
    match args.what {
        Some(CreateWhat::Deployment(d)) => {
            let object = deployment_object(&d.name, &d.image, d.replicas, d.port, &mut random_suffix);
            create_generated(s, object, &d.common, out).await
        }
        Some(CreateWhat::Namespace(n)) => {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"creationTimestamp": null, "name": n.name}, "spec": {}, "status": {}});
            create_generated(s, object, &n.common, out).await
        }
        None => {
            if args.filenames.is_empty() {
                return Err(CtlError::usage("must specify one of -f and -k"));
            }
            create_from_files(s, &args, out).await
        }
    }
}

async fn create_from_files(s: &mut Session, args: &CreateArgs, out: &mut Out) -> Result<()> {
    let dry = args.common.dry_run.get()?;
    let format = objects::output_format(args.common.output.as_deref())?;
    let docs = manifest::read_sources(&args.filenames, args.recursive)?;
    if docs.is_empty() {
        return Err(CtlError::usage("no objects passed to create"));
    }
    let mut errors = Vec::new();
    for doc in docs {
        let result = async {
            // `generateName` objects get their name from the server.
            let generated = doc.name().is_none() && doc.object["metadata"]["generateName"].is_string();
            let mut named = doc.clone();
            if generated {
                named.object["metadata"]["name"] = json!("-");
            }
            let mut obj = locate(s, &named).await?;
            let mut body = with_namespace(&doc.object, obj.namespace.as_deref());
            if args.save_config {
                body = apply_body(&body, None);
            }
            let created = post(s, &obj, body, &args.common.field_manager, dry)
                .await
                .map_err(|e| with_context(e, "creating", &doc.source))?;
            if generated {
                obj.name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
            }
            Ok::<_, CtlError>((obj, created))
        }
        .await;
        match result {
            Ok((obj, created)) => objects::report(
                out,
                format.as_ref(),
                &obj,
                &created,
                &format!("{} created{}", obj.type_name(), dry.suffix()),
            )?,
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// POSTs an object to its collection (or, for a client dry run, returns it unchanged).
pub async fn post(s: &mut Session, obj: &Obj, body: Value, manager: &str, dry: DryRun) -> Result<Value> {
    if dry == DryRun::Client {
        return Ok(body);
    }
    let path = obj.info.url_path(obj.namespace.as_deref(), None);
    let req =
        Request::new(Method::POST, path).param("fieldManager", manager).body("application/json", for_server(body));
    call(s, req.dry_run(dry)).await
}

/// Creates a generated object (create deployment/namespace, run, expose) and reports it.
pub async fn create_generated(s: &mut Session, object: Value, common: &CreateCommon, out: &mut Out) -> Result<()> {
    let dry = common.dry_run.get()?;
    let format = objects::output_format(common.output.as_deref())?;
    let resolver = s.resolver().await?;
    let info = resolver
        .for_kind(object["apiVersion"].as_str().unwrap_or_default(), object["kind"].as_str().unwrap_or_default())?
        .clone();
    let namespace = if info.namespaced { Some(s.namespace()?) } else { None };
    let mut body = object.clone();
    if let (Some(ns), Some(meta)) = (&namespace, body.get_mut("metadata").and_then(Value::as_object_mut)) {
        if dry != DryRun::Client {
            meta.insert("namespace".into(), json!(ns));
        }
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let obj = Obj { info, namespace, name, object: Value::Null, source: None };
    let created = post(s, &obj, body, &common.field_manager, dry).await?;
    objects::report(out, format.as_ref(), &obj, &created, &format!("{} created{}", obj.type_name(), dry.suffix()))
}

/// Drops what kubectl prints for generated objects but never sends (`creationTimestamp: null`,
/// empty `status`).
pub fn for_server(mut object: Value) -> Value {
    fn strip_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    if let Some(m) = object.as_object_mut() {
        if m.get("status").is_some_and(|s| s.as_object().is_some_and(Map::is_empty)) {
            m.remove("status");
        }
    }
    strip_nulls(&mut object);
    object
}

/// kubectl's `create deployment` object: labels `app=NAME`, one container per image named
/// after the image (path and tag stripped; `.`/`_` replaced and a random suffix added).
pub fn deployment_object(
    name: &str,
    images: &[String],
    replicas: i64,
    port: i64,
    suffix: &mut dyn FnMut() -> String,
) -> Value {
    let mut containers: Vec<Value> = images
        .iter()
        .map(|image| json!({"image": image, "name": container_name(image, suffix), "resources": {}}))
        .collect();
    if port >= 0 {
        if let Some(first) = containers.first_mut() {
            first["ports"] = json!([{"containerPort": port}]);
        }
    }
    let labels = json!({"app": name});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"creationTimestamp": null, "labels": labels, "name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": labels},
                "spec": {"containers": containers},
            },
        },
        "status": {},
    })
}

/// The container name kubectl derives from an image reference.
fn container_name(image: &str, suffix: &mut dyn FnMut() -> String) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split(':').next().unwrap_or(last);
    let name = name.split('@').next().unwrap_or(name);
    if name.contains(['_', '.']) {
        format!("{}-{}", name.replace(['_', '.'], "-"), suffix())
    } else {
        name.to_string()
    }
}

/// Five characters from the alphabet Kubernetes uses for generated names.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let mut n = hasher.finish();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx() -> Value {
        serde_yaml::from_str(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nginx-deployment\n  labels:\n    app: nginx\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: nginx\n  template:\n    metadata:\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1.14.2\n        ports:\n        - containerPort: 80\n",
        )
        .unwrap()
    }

    #[test]
    fn last_applied_matches_kubectl_byte_for_byte() {
        let m = with_namespace(&nginx(), Some("default"));
        // Copied from `kubectl get deploy -o yaml` after `kubectl apply` of the same manifest.
        assert_eq!(
            last_applied(&m),
            "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"nginx\"},\"name\":\"nginx-deployment\",\"namespace\":\"default\"},\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"nginx\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"nginx\"}},\"spec\":{\"containers\":[{\"image\":\"nginx:1.14.2\",\"name\":\"nginx\",\"ports\":[{\"containerPort\":80}]}]}}}}\n"
        );
        let odd = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "annotations": {LAST_APPLIED: "old", "a": "<&>"}}});
        assert_eq!(
            last_applied(&odd),
            "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{\"a\":\"\\u003c\\u0026\\u003e\"},\"name\":\"x\"}}\n"
        );
    }

    #[test]
    fn removed_map_fields_become_nulls() {
        let previous = with_namespace(&nginx(), Some("default"));
        let mut current = previous.clone();
        current["metadata"].as_object_mut().unwrap().remove("labels");
        current["spec"].as_object_mut().unwrap().remove("replicas");
        let body = apply_body(&current, Some(&previous));
        assert_eq!(body["metadata"]["labels"], Value::Null);
        assert!(body["metadata"].as_object().unwrap().contains_key("labels"));
        assert!(body["spec"].as_object().unwrap().contains_key("replicas"));
        assert_eq!(body["spec"]["replicas"], Value::Null);
        // Keyed list items are diffed by their merge key: the container's ports go.
        current["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
        let body = apply_body(&current, Some(&previous));
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"],
            json!([{"image": "nginx:1.14.2", "name": "nginx", "ports": null}])
        );
        // Items are matched by key, not position; unmatched items are left alone.
        let mut swapped = previous.clone();
        swapped["spec"]["template"]["spec"]["containers"] = json!([{"name": "other", "image": "x"}]);
        let body = apply_body(&swapped, Some(&previous));
        assert_eq!(body["spec"]["template"]["spec"]["containers"], json!([{"name": "other", "image": "x"}]));
        let body = apply_body(&current, Some(&previous));
        let annotation = body["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        assert!(!annotation.contains("replicas") && !annotation.contains("containerPort"));
        // First apply: nothing to remove.
        let first = apply_body(&previous, None);
        assert!(!first["spec"]["replicas"].is_null());
    }

    #[test]
    fn outcomes() {
        let manifest = with_namespace(&nginx(), Some("default"));
        let body = apply_body(&manifest, None);
        assert_eq!(outcome(None, &body), Outcome::Created);
        // The live object: the manifest plus server defaults, status and controller annotations,
        // with the container list holding more fields than the manifest.
        let mut live = body.clone();
        live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
        live["metadata"]["resourceVersion"] = json!("42");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        live["status"] = json!({"replicas": 3});
        assert_eq!(outcome(Some(&live), &body), Outcome::Unchanged);
        // A changed value, a field to remove, an extra list item: configured.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert_eq!(outcome(Some(&scaled), &body), Outcome::Configured);
        let mut trimmed = manifest.clone();
        trimmed["metadata"].as_object_mut().unwrap().remove("labels");
        assert_eq!(outcome(Some(&live), &apply_body(&trimmed, Some(&manifest))), Outcome::Configured);
        let mut extra = live.clone();
        extra["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "x"}));
        assert_eq!(outcome(Some(&extra), &body), Outcome::Configured);
        // Objects created elsewhere lack the annotation: the apply adds it.
        let mut bare = live.clone();
        bare["metadata"]["annotations"].as_object_mut().unwrap().remove(LAST_APPLIED);
        assert_eq!(outcome(Some(&bare), &body), Outcome::Configured);
    }

    #[test]
    fn create_deployment_object_is_kubectls() {
        let images = vec!["nginx:1.25".to_string(), "registry.io/team/my_app.v2@sha256:abc".to_string()];
        let obj = deployment_object("web", &images, 2, 80, &mut || "x2b4c".to_string());
        // kubectl create deployment web --image=… --image=… --replicas=2 --port=80 --dry-run=client -o yaml
        assert_eq!(
            crate::output::to_yaml(&obj),
            "apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
    spec:
      containers:
      - image: nginx:1.25
        name: nginx
        ports:
        - containerPort: 80
        resources: {}
      - image: registry.io/team/my_app.v2@sha256:abc
        name: my-app-v2-x2b4c
        resources: {}
status: {}
"
        );
        let sent = for_server(obj);
        assert!(sent.get("status").is_none());
        assert!(sent["metadata"].get("creationTimestamp").is_none());
        assert_eq!(sent["spec"]["strategy"], json!({}));
    }

    #[test]
    fn random_suffixes_use_the_name_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn ssa_conflicts_read_like_kubectl() {
        let e = CtlError::Server {
            reason: "Conflict".into(),
            code: 409,
            message: "Operation cannot be fulfilled on  \"\": Apply failed with 1 conflict(s): conflict with \"kubectl-client-side-apply\": .spec.replicas".into(),
        };
        let text = ssa_error(e, "x.yaml").to_string();
        assert!(text.starts_with("error: Apply failed with 1 conflict(s): conflict with \"kubectl-client-side-apply\": .spec.replicas\nPlease review the fields above"), "{text}");
        assert!(text.ends_with("server-side-apply/#conflicts"));
        let other = ssa_error(CtlError::not_found("namespaces", "x"), "x.yaml");
        assert_eq!(
            other.to_string(),
            "Error from server (NotFound): error when patching \"x.yaml\": namespaces \"x\" not found"
        );
    }

    #[test]
    fn errors_name_the_file() {
        let e = CtlError::not_found("namespaces", "other");
        assert_eq!(
            with_context(e, "creating", "nginx.yaml").to_string(),
            "Error from server (NotFound): error when creating \"nginx.yaml\": namespaces \"other\" not found"
        );
    }
}

//! Shared plumbing of the verbs that change objects (apply, create, delete, edit, scale,
//! set, label, annotate, taint, drain): raw JSON REST calls with failover, picking the
//! objects a command acts on (`TYPE NAME…`, `TYPE/NAME`, `-f`, `-l`, `--all`, `-A`),
//! `--dry-run`, and kubectl's way of reporting several per-object errors at the end.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::cmd::manifest;
use crate::error::{CtlError, Result};
use crate::output::{self, OutputFormat};
use crate::resources::{parse_targets, ResourceInfo};
use crate::session::Session;
use crate::Out;

/// `application/merge-patch+json`.
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// `application/strategic-merge-patch+json`.
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
/// `application/apply-patch+yaml` (the body may be JSON: JSON is YAML).
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// One REST request with a JSON answer.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: &'static str,
    pub body: Option<Value>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Request {
        Request { method, path: path.into(), query: Vec::new(), content_type: "application/json", body: None }
    }

    pub fn get(path: impl Into<String>) -> Request {
        Request::new(Method::GET, path)
    }

    /// Adds a query parameter.
    pub fn param(mut self, key: &str, value: impl Into<String>) -> Request {
        self.query.push((key.to_string(), value.into()));
        self
    }

    /// Sets a JSON body with its content type.
    pub fn body(mut self, content_type: &'static str, body: Value) -> Request {
        self.content_type = content_type;
        self.body = Some(body);
        self
    }

    /// `dryRun=All` when the server should only pretend.
    pub fn dry_run(self, dry: DryRun) -> Request {
        if dry == DryRun::Server {
            self.param("dryRun", "All")
        } else {
            self
        }
    }

    fn uri(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.path, q.finish())
    }

    async fn send(self, client: kube::Client) -> std::result::Result<Value, kube::Error> {
        let body = match &self.body {
            Some(b) => serde_json::to_vec(b).expect("a JSON value serializes"),
            None => Vec::new(),
        };
        let mut builder = http::Request::builder().method(self.method.clone()).uri(self.uri());
        if self.body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, self.content_type);
        }
        let request = builder.body(body).map_err(kube::Error::HttpError)?;
        client.request::<Value>(request).await
    }
}

/// Sends `req` to the current server, failing over when it is unreachable.
pub async fn call(s: &mut Session, req: Request) -> Result<Value> {
    tracing::debug!(method = %req.method, uri = %req.uri(), "request");
    s.call(|client| req.clone().send(client)).await
}

/// GETs one object; `Ok(None)` when it does not exist.
pub async fn get_opt(s: &mut Session, info: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Option<Value>> {
    match call(s, Request::get(info.url_path(ns, Some(name)))).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `--dry-run`'s value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    #[default]
    None,
    /// Print what would be sent; send nothing that writes.
    Client,
    /// Send with `dryRun=All`: the server validates and answers without storing.
    Server,
}

impl DryRun {
    /// Parses `--dry-run[=none|client|server]` (a bare `--dry-run` arrives as `client`).
    pub fn parse(flag: &str) -> Result<DryRun> {
        match flag {
            "" | "none" | "false" => Ok(DryRun::None),
            "client" | "true" => Ok(DryRun::Client),
            "server" => Ok(DryRun::Server),
            other => Err(CtlError::usage(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ))),
        }
    }

    /// The suffix kubectl adds to its messages: ` (dry run)` / ` (server dry run)`.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// The `--dry-run` flag as every mutating verb declares it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DryRunArg {
    /// Must be "none", "server", or "client". With client, only print the object that would be
    /// sent; with server, submit a server-side request without persisting the resource.
    #[arg(long = "dry-run", value_name = "none|client|server", default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: String,
}

impl DryRunArg {
    pub fn get(&self) -> Result<DryRun> {
        DryRun::parse(&self.dry_run)
    }
}

/// A reference to one object on the server, with its type.
#[derive(Debug, Clone)]
pub struct Obj {
    pub info: ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    /// The live object when it was fetched (lists and GETs), or the manifest for `-f`.
    pub object: Value,
    /// Where it came from (a file name for `-f`), for error messages.
    pub source: Option<String>,
}

impl Obj {
    /// `deployment.apps/web`: kubectl's `-o name` and most success messages.
    pub fn type_name(&self) -> String {
        format!("{}/{}", self.info.qualified_singular(), self.name)
    }

    /// REST path of the object.
    pub fn path(&self) -> String {
        self.info.url_path(self.namespace.as_deref(), Some(&self.name))
    }
}

/// The flags kubectl's object-picking verbs share (`-f`, `-R`, `-l`, `--field-selector`,
/// `--all`, `-A`), flattened into each verb's own flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectFlags {
    /// Files or directories with the objects (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Process the directory used in -f, --filename recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Select all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// The flags of the verbs that change the objects they pick and print them (`scale`,
/// `autoscale`, `set image`): which objects, `-o` and `--dry-run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PickWriteFlags {
    /// Which objects: -f/-R, -l, --field-selector, --all, -A.
    #[command(flatten)]
    pub select: SelectFlags,
    /// Output format: name, yaml, json or jsonpath=….
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

impl PickWriteFlags {
    /// The `--dry-run` mode and the `-o` format (see [`output_format`]), checked in that order.
    pub fn modes(&self) -> Result<(DryRun, Option<OutputFormat>)> {
        Ok((self.dry_run.get()?, output_format(self.output.as_deref())?))
    }

    /// The selection of these flags with the positional resource arguments `args`.
    pub fn selection(&self, args: Vec<String>) -> Selection {
        Selection { args, flags: self.select.clone() }
    }
}

/// What a verb acts on: its positional resource arguments and the picking flags.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Positional resource arguments (`TYPE NAME…` / `TYPE/NAME…`).
    pub args: Vec<String>,
    pub flags: SelectFlags,
}

/// What a selection found: the objects, and the per-object errors (names that do not exist)
/// that kubectl reports after acting on the rest.
#[derive(Debug, Default)]
pub struct Found {
    pub objects: Vec<Obj>,
    pub errors: Vec<CtlError>,
    /// Whether a type was listed (by selector or `--all`): an empty result then prints
    /// kubectl's `No resources found`.
    pub listed: bool,
}

/// Finds the objects a selection names. `fetch` controls whether named objects are read from
/// the server (label, scale, …) or only referenced (delete).
pub async fn select(s: &mut Session, sel: &Selection, fetch: bool) -> Result<Found> {
    if sel.flags.all && sel.flags.selector.is_some() {
        return Err(CtlError::usage("cannot set --all and --selector at the same time"));
    }
    let mut found = Found::default();
    if !sel.flags.filenames.is_empty() {
        if !sel.args.is_empty() {
            return Err(CtlError::usage("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'"));
        }
        let docs = manifest::read_sources(&sel.flags.filenames, sel.flags.recursive)?;
        let resolver = s.resolver().await?;
        let default_ns = s.namespace()?;
        for doc in docs {
            let info = resolver.for_kind(&doc.api_version(), &doc.kind())?.clone();
            let ns = manifest::namespace_for(&doc.object, info.namespaced, s.namespace_flag(), &default_ns)?;
            let name = doc
                .name()
                .ok_or_else(|| CtlError::usage(format!("resource name may not be empty in {}", doc.source)))?;
            let object = if fetch {
                match get_opt(s, &info, ns.as_deref(), &name).await? {
                    Some(live) => live,
                    None => {
                        found.errors.push(CtlError::not_found(&info.qualified_plural(), &name));
                        continue;
                    }
                }
            } else {
                doc.object.clone()
            };
            found.objects.push(Obj { info, namespace: ns, name, object, source: Some(doc.source.clone()) });
        }
        return Ok(found);
    }
    if sel.args.is_empty() {
        return Err(CtlError::usage(
            "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'",
        ));
    }
    let groups = parse_targets(&sel.args)?;
    let resolver = s.resolver().await?;
    let ns = s.namespace()?;
    for group in groups {
        // `all` and other categories name several types at once.
        let infos: Vec<ResourceInfo> = match resolver.resolve(&group.type_word) {
            Ok(info) => vec![info.clone()],
            Err(e) => {
                let members: Vec<ResourceInfo> = resolver.category(&group.type_word).into_iter().cloned().collect();
                if members.is_empty() || !group.names.is_empty() {
                    return Err(e);
                }
                members
            }
        };
        for info in infos {
            select_type(s, sel, fetch, &info, &group.names, &ns, &mut found).await?;
        }
    }
    Ok(found)
}

/// Adds the objects of one type to `found`: the named ones, or those a selector / `--all` lists.
async fn select_type(
    s: &mut Session,
    sel: &Selection,
    fetch: bool,
    info: &ResourceInfo,
    names: &[String],
    ns: &str,
    found: &mut Found,
) -> Result<()> {
    let namespace = info.namespaced.then(|| ns.to_string());
    if names.is_empty() {
        if !sel.flags.all && sel.flags.selector.is_none() && sel.flags.field_selector.is_none() {
            return Err(CtlError::usage("resource(s) were provided, but no name was specified"));
        }
        found.listed = true;
        let list_ns = if sel.flags.all_namespaces { None } else { namespace.as_deref() };
        for object in list(s, info, list_ns, sel.flags.selector.as_deref(), sel.flags.field_selector.as_deref()).await?
        {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
            found.objects.push(Obj { info: info.clone(), namespace, name, object, source: None });
        }
        return Ok(());
    }
    if sel.flags.all || sel.flags.selector.is_some() {
        return Err(CtlError::usage("name cannot be provided when a selector is specified"));
    }
    for name in names.iter().cloned() {
        let object = if fetch {
            match get_opt(s, info, namespace.as_deref(), &name).await? {
                Some(o) => o,
                None => {
                    found.errors.push(CtlError::not_found(&info.qualified_plural(), &name));
                    continue;
                }
            }
        } else {
            Value::Null
        };
        found.objects.push(Obj { info: info.clone(), namespace: namespace.clone(), name, object, source: None });
    }
    Ok(())
}

/// Lists one type (in `ns`, or everywhere) with optional label and field selectors.
pub async fn list(
    s: &mut Session,
    info: &ResourceInfo,
    ns: Option<&str>,
    labels: Option<&str>,
    fields: Option<&str>,
) -> Result<Vec<Value>> {
    let mut req = Request::get(info.url_path(ns, None));
    if let Some(l) = labels {
        req = req.param("labelSelector", l);
    }
    if let Some(f) = fields {
        req = req.param("fieldSelector", f);
    }
    let list = call(s, req).await?;
    let kind = info.kind.clone();
    let api_version = info.api_version();
    Ok(list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut item| {
            // Items of a list carry no apiVersion/kind; printing and manifests want them.
            if let Some(m) = item.as_object_mut() {
                m.entry("apiVersion").or_insert_with(|| Value::String(api_version.clone()));
                m.entry("kind").or_insert_with(|| Value::String(kind.clone()));
            }
            item
        })
        .collect())
}

/// Prints every error but the last to stderr and returns the last (kubectl reports all the
/// failures of a multi-object command after doing what it could, then exits 1).
pub fn finish(mut errors: Vec<CtlError>) -> Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for e in errors {
        eprintln!("{e}");
    }
    Err(last)
}

/// Prints a success line (`deployment.apps/web scaled`) or, with `-o`, the object.
pub fn report(out: &mut Out, format: Option<&OutputFormat>, obj: &Obj, object: &Value, message: &str) -> Result<()> {
    match format {
        None => crate::emit(out, &format!("{}\n", message)),
        Some(f) => {
            let text = output::render_objects(f, &[(obj.info.clone(), object.clone())], true)?;
            crate::emit(out, &text)
        }
    }
}

/// Parses `-o` for verbs that print the changed object instead of a message: only `name`,
/// `yaml`, `json` and `jsonpath` make sense there.
pub fn output_format(flag: Option<&str>) -> Result<Option<OutputFormat>> {
    match flag {
        None | Some("") => Ok(None),
        Some(f) => match OutputFormat::parse(Some(f))? {
            OutputFormat::Table | OutputFormat::Wide => Err(CtlError::usage(format!(
                "unable to match a printer suitable for the output format \"{f}\", allowed formats are: json,jsonpath,name,yaml"
            ))),
            other => Ok(Some(other)),
        },
    }
}

/// Polls until `obj` is gone (404, or replaced by a new object with another uid), or `limit`.
pub async fn wait_deleted(s: &mut Session, obj: &Obj, uid: Option<&str>, limit: Duration) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match get_opt(s, &obj.info, obj.namespace.as_deref(), &obj.name).await? {
            None => return Ok(true),
            Some(live) if uid.is_some() && live["metadata"]["uid"].as_str() != uid => return Ok(true),
            Some(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Splits kubectl's mixed positional arguments into resource words and `key=value` / `key-`
/// edits (label, annotate, set image), the way kubectl does.
pub fn split_edits(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut resources = Vec::new();
    let mut edits = Vec::new();
    for a in args {
        if a.contains('=') || a.ends_with('-') {
            edits.push(a.clone());
        } else {
            resources.push(a.clone());
        }
    }
    (resources, edits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_values() {
        assert_eq!(DryRun::parse("client").unwrap(), DryRun::Client);
        assert_eq!(DryRun::parse("server").unwrap(), DryRun::Server);
        assert_eq!(DryRun::parse("none").unwrap(), DryRun::None);
        assert_eq!(
            DryRun::parse("x").unwrap_err().to_string(),
            "error: Invalid dry-run value (x). Must be \"none\", \"server\", or \"client\"."
        );
        assert_eq!(DryRun::Server.suffix(), " (server dry run)");
    }

    #[test]
    fn mixed_arguments_split_like_kubectl() {
        let args: Vec<String> =
            ["pods", "web", "a=b", "c-", "pod/x", "example.com/k-"].iter().map(|s| s.to_string()).collect();
        let (res, edits) = split_edits(&args);
        assert_eq!(res, vec!["pods", "web", "pod/x"]);
        assert_eq!(edits, vec!["a=b", "c-", "example.com/k-"]);
    }

    #[test]
    fn request_uris_encode_queries() {
        let r = Request::get("/api/v1/pods").param("labelSelector", "app in (a,b)").param("fieldSelector", "x=y");
        assert_eq!(r.uri(), "/api/v1/pods?labelSelector=app+in+%28a%2Cb%29&fieldSelector=x%3Dy");
    }
}

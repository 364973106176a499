//! `berthctl get`: lists or fetches objects of one or more types and prints them as the
//! server's tables (kubectl's columns, `-o wide`, `-A`, `--show-labels`, `-L`) or as
//! yaml/json/name/jsonpath; `-w`/`--watch-only` then follow changes (see [`super::watch`]).
//!
//! Tables come from the API server (`Accept: …;as=Table`), exactly as kubectl gets them, so
//! the columns are kube-apiserver's printers; this module only lays them out.

use serde_json::Value;

use crate::error::{CtlError, Result};
use crate::output::table::{self, Grid, TableOptions};
use crate::output::{self, OutputFormat};
use crate::resources::{parse_targets, ResourceInfo};
use crate::session::Session;
use crate::{emit, Out};

/// The Accept header kubectl sends for server-side tables.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Flags of `get` (kubectl's names).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GetArgs {
    /// TYPE[,TYPE…] [NAME…] or TYPE/NAME…
    pub args: Vec<String>,
    /// Output format: json|yaml|name|wide|jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Selector (label query) to filter on, supports '=', '==', '!=', 'in', 'notin' and 'key'.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on, e.g. --field-selector status.phase=Running.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// When printing, show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Label keys to print as columns (comma-separated or repeated).
    #[arg(short = 'L', long = "label-columns", value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// After listing/getting the requested object, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes to the requested object(s), without listing/getting first.
    #[arg(long)]
    pub watch_only: bool,
    /// Output watch event objects (an EVENT column) when --watch or --watch-only is used.
    #[arg(long)]
    pub output_watch_events: bool,
    /// When using the default output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// List the resource type for the requested object(s).
    #[arg(long)]
    pub show_kind: bool,
    /// If the requested object does not exist the command will return exit code 0.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Return large lists in chunks rather than all at once (0 disables chunking).
    #[arg(long, default_value_t = 500)]
    pub chunk_size: u32,
}

/// One resolved type with the names asked for (empty = all).
pub struct Request {
    pub info: ResourceInfo,
    pub names: Vec<String>,
}

/// Runs `get`.
pub async fn run(session: &mut Session, args: GetArgs, out: &mut Out) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    if args.args.is_empty() {
        return Err(CtlError::usage(
            "You must specify the type of resource to get. Use \"berthctl api-resources\" for a complete list of supported resources.",
        ));
    }
    let requests = resolve_requests(session, &args.args).await?;
    let namespace = if args.all_namespaces { None } else { Some(session.namespace()?) };
    if args.watch || args.watch_only {
        let [request] = requests.as_slice() else {
            return Err(CtlError::usage("you may only specify a single resource type"));
        };
        if request.names.len() > 1 {
            return Err(CtlError::usage(
                "watch is only supported on individual resources and resource collections, but 2 resources were found",
            ));
        }
        return super::watch::run(session, request, namespace.as_deref(), &args, &format, out).await;
    }
    let several_types = requests.len() > 1 || args.show_kind;
    let mut errors: Vec<CtlError> = Vec::new();
    let mut printed_any = false;
    let mut objects: Vec<(ResourceInfo, Value)> = Vec::new();
    let mut tables: Vec<Grid> = Vec::new();
    let single = requests.len() == 1 && requests[0].names.len() == 1;
    for request in &requests {
        let info = &request.info;
        let ns = if info.namespaced { namespace.as_deref() } else { None };
        if format.is_table() {
            let opts = TableOptions {
                wide: format == OutputFormat::Wide,
                namespace_column: args.all_namespaces && info.namespaced,
                show_labels: args.show_labels,
                label_columns: args.label_columns.clone(),
                name_prefix: several_types.then(|| format!("{}/", info.qualified_singular())),
                no_headers: args.no_headers,
            };
            let mut grid = Grid::default();
            let mut rows_found = false;
            for table in fetch(session, info, ns, &request.names, &args, true, &mut errors).await? {
                let g = table::grid(&table, &opts);
                if grid.header.is_empty() {
                    grid.header = g.header;
                }
                rows_found |= !g.rows.is_empty();
                grid.rows.extend(g.rows);
            }
            if rows_found {
                tables.push(grid);
            }
        } else {
            for object in fetch(session, info, ns, &request.names, &args, false, &mut errors).await? {
                objects.push((info.clone(), object));
            }
        }
    }
    if format.is_table() {
        let text: Vec<String> = tables.iter().map(table::render).collect();
        printed_any = !text.is_empty();
        emit(out, &text.join("\n"))?;
    } else if !single || !objects.is_empty() {
        // One named object prints bare; anything else as a List (empty too), as kubectl does.
        emit(out, &output::render_objects(&format, &objects, single)?)?;
        printed_any = !objects.is_empty();
    }
    let asked_for_names = requests.iter().any(|r| !r.names.is_empty());
    if !printed_any && errors.is_empty() && !asked_for_names && format.is_table() {
        eprintln!("{}", no_resources_message(namespace.as_deref(), &requests));
    }
    finish(errors)
}

/// Resolves the positional arguments (`all` expands to its category).
pub(crate) async fn resolve_requests(session: &mut Session, args: &[String]) -> Result<Vec<Request>> {
    let resolver = session.resolver().await?;
    let mut out = Vec::new();
    for group in parse_targets(args)? {
        if group.type_word == "all" {
            for info in resolver.category("all") {
                out.push(Request { info: info.clone(), names: group.names.clone() });
            }
            continue;
        }
        let info = resolver.resolve(&group.type_word)?.clone();
        out.push(Request { info, names: group.names });
    }
    Ok(out)
}

/// kubectl's message when a list is empty.
pub fn no_resources_message(namespace: Option<&str>, requests: &[Request]) -> String {
    match namespace {
        Some(ns) if requests.iter().any(|r| r.info.namespaced) => format!("No resources found in {ns} namespace."),
        _ => "No resources found".to_string(),
    }
}

/// Several per-object errors print one per line, then the command exits 1; one error is
/// returned as is (the caller prints it).
fn finish(mut errors: Vec<CtlError>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            for e in &errors {
                eprintln!("{e}");
            }
            Err(CtlError::Exit(1))
        }
    }
}

/// The query string of a list: selectors and paging.
pub(crate) fn list_query(args: &GetArgs, extra: &[(&str, String)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(l) = &args.selector {
        query.append_pair("labelSelector", l);
    }
    if let Some(f) = &args.field_selector {
        query.append_pair("fieldSelector", f);
    }
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    query.finish()
}

/// GETs `path` (a Table when `table`), failing over between servers.
pub(crate) async fn get_json(session: &mut Session, path: &str, table: bool) -> Result<Value> {
    session
        .call(|client| {
            let mut builder = http::Request::get(path);
            if table {
                builder = builder.header(http::header::ACCEPT, TABLE_ACCEPT);
            }
            let request = builder.body(Vec::new()).expect("a GET request builds");
            async move { client.request::<Value>(request).await }
        })
        .await
}

/// A whole collection, following `continue` tokens (kubectl's `--chunk-size`).
pub(crate) async fn list_all(
    session: &mut Session,
    info: &ResourceInfo,
    ns: Option<&str>,
    args: &GetArgs,
    table: bool,
) -> Result<Value> {
    let mut merged: Option<Value> = None;
    let mut token = String::new();
    // Bounded: each page moves the continue token forward; a server repeating a token ends it.
    for _page in 0..100_000 {
        let mut extra = Vec::new();
        if args.chunk_size > 0 {
            extra.push(("limit", args.chunk_size.to_string()));
        }
        if !token.is_empty() {
            extra.push(("continue", token.clone()));
        }
        let path = format!("{}?{}", info.url_path(ns, None), list_query(args, &extra));
        let page = get_json(session, &path, table).await?;
        let next = page["metadata"]["continue"].as_str().unwrap_or("").to_string();
        let key = if table { "rows" } else { "items" };
        match &mut merged {
            None => merged = Some(page),
            Some(m) => {
                let more = page[key].as_array().cloned().unwrap_or_default();
                if let Some(items) = m[key].as_array_mut() {
                    items.extend(more);
                }
                m["metadata"] = page["metadata"].clone();
            }
        }
        if next.is_empty() || next == token {
            break;
        }
        token = next;
    }
    Ok(merged.unwrap_or(Value::Null))
}

/// What `get` prints of a type: as Tables when `table` (the whole collection as one, or one per
/// named object), else the objects with apiVersion/kind filled in, as kubectl prints list
/// items.
async fn fetch(
    session: &mut Session,
    info: &ResourceInfo,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
    table: bool,
    errors: &mut Vec<CtlError>,
) -> Result<Vec<Value>> {
    let mut found = if !names.is_empty() {
        // Server errors about one object are collected in `errors` (NotFound dropped with
        // `--ignore-not-found`); others end the command.
        let mut found = Vec::new();
        for name in names {
            match get_json(session, &info.url_path(ns, Some(name)), table).await {
                Ok(v) => found.push(v),
                Err(e) if e.is_not_found() && args.ignore_not_found => {}
                Err(e) if matches!(e, CtlError::Server { .. }) => errors.push(e),
                Err(e) => return Err(e),
            }
        }
        found
    } else if table {
        vec![list_all(session, info, ns, args, true).await?]
    } else {
        let list = list_all(session, info, ns, args, false).await?;
        list["items"].as_array().cloned().unwrap_or_default()
    };
    if !table {
        for o in &mut found {
            with_type(o, info);
        }
    }
    Ok(found)
}

/// Fills `apiVersion`/`kind`, which list items leave out.
pub(crate) fn with_type(object: &mut Value, info: &ResourceInfo) {
    if let Some(map) = object.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| Value::String(info.api_version()));
        map.entry("kind").or_insert_with(|| Value::String(info.kind.clone()));
    }
}

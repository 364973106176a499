//! `get -w` / `--watch-only`: print the current table, then one row per change as it
//! happens, until Ctrl-C.
//!
//! The stream is resumed, never restarted: every reconnect (the server ended the watch,
//! the connection broke, the server died and we failed over to another one) continues
//! from the last resourceVersion seen, so no change is missed and none is printed twice.
//! When the server says that version is gone (410), the collection is listed again and
//! only what differs from what was already printed is printed. [`WatchPrinter`] is the
//! pure part: events in, text out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use serde_json::Value;

use super::get::{get_json, list_all, with_type, GetArgs, Request};
use crate::error::{CtlError, Result};
use crate::output::table::{self, TableOptions};
use crate::output::{self, jsonpath, OutputFormat};
use crate::resources::ResourceInfo;
use crate::session::Session;
use crate::{emit, Out};

/// How long the server keeps one watch request open before we resume with a new one.
const WATCH_SECONDS: u64 = 60;
/// No line at all (not even the server's own end of a watch) for this long means the
/// server hangs: fail over.
const IDLE_LIMIT: Duration = Duration::from_secs(WATCH_SECONDS + 15);
/// The same once the server has shown that it sends BOOKMARKs when idle (Berth's servers
/// send one every 5 s): three missed ones mean a paused or cut-off server.
const IDLE_LIMIT_WITH_BOOKMARKS: Duration = Duration::from_secs(15);
/// Give up when no server has been reachable for this long.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(60);
/// Pause between reconnection attempts while no server answers.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Turns watch events into printed lines, remembering what it printed.
pub struct WatchPrinter {
    format: OutputFormat,
    info: ResourceInfo,
    opts: TableOptions,
    events_column: bool,
    columns: Vec<Value>,
    widths: Vec<usize>,
    /// Per object (namespace/name): the resourceVersion and table row last printed.
    seen: HashMap<String, (u64, Value)>,
    printed: usize,
    /// The `-o jsonpath` template, parsed once (`OutputFormat::parse` validated it).
    template: Option<jsonpath::Template>,
}

/// The outcome of one watch line.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Text to print (may be empty) and the resourceVersion to resume from, if it moved.
    Print(String, Option<String>),
    /// A BOOKMARK: nothing to print, resume from this resourceVersion.
    Bookmark(String),
    /// The resourceVersion is too old (410 Gone): list again.
    Relist,
    /// The server sent an error event (its `Status`).
    Failed(Value),
}

impl WatchPrinter {
    /// A printer for one type in one format.
    pub fn new(format: OutputFormat, info: ResourceInfo, opts: TableOptions, events_column: bool) -> WatchPrinter {
        let template = match &format {
            OutputFormat::JsonPath(t) => jsonpath::Template::parse(t).ok(),
            _ => None,
        };
        WatchPrinter {
            format,
            info,
            opts,
            events_column,
            columns: vec![],
            widths: vec![],
            seen: HashMap::new(),
            printed: 0,
            template,
        }
    }

    /// The initial list (a Table or a List of objects): text to print unless watch-only.
    pub fn initial(&mut self, list: &Value, print: bool) -> String {
        let mut text = String::new();
        if self.format.is_table() {
            self.columns = list["columnDefinitions"].as_array().cloned().unwrap_or_default();
            let mut header = table::header(&self.columns, &self.opts);
            if self.events_column {
                header.insert(0, "EVENT".into());
            }
            let rows: Vec<Value> = list["rows"].as_array().cloned().unwrap_or_default();
            let mut grid = table::Grid { header, rows: vec![] };
            for row in &rows {
                let mut cells = table::row(&self.columns, row, &self.opts);
                if self.events_column {
                    cells.insert(0, "ADDED".into());
                }
                grid.rows.push(cells);
                self.remember(row);
            }
            self.widths = table::widths(&grid);
            if self.opts.no_headers {
                grid.header.clear();
            }
            // kubectl prints the header only once there is a row to go under it (with
            // --output-watch-events it prints the EVENT header at once).
            if print && (!grid.rows.is_empty() || (self.events_column && !self.opts.no_headers)) {
                text = table::render(&grid);
                self.printed = 1;
            }
        } else {
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                self.remember(&item);
                if print {
                    text.push_str(&self.object_text("ADDED", &item));
                }
            }
        }
        text
    }

    fn key(object: &Value) -> (String, u64) {
        let meta = &object["metadata"];
        let key = format!("{}/{}", meta["namespace"].as_str().unwrap_or(""), meta["name"].as_str().unwrap_or(""));
        let rv = meta["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
        (key, rv)
    }

    /// `subject` is a Table row (`object` = metadata) or a full object; it is what a
    /// later deletion found by a re-list prints.
    fn remember(&mut self, subject: &Value) {
        let meta_holder = if self.format.is_table() { &subject["object"] } else { subject };
        let (key, rv) = Self::key(meta_holder);
        self.seen.insert(key, (rv, subject.clone()));
    }

    /// One line of the watch stream.
    pub fn on_line(&mut self, line: &str) -> Step {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return Step::Print(String::new(), None);
        };
        let kind = event["type"].as_str().unwrap_or("");
        let object = &event["object"];
        match kind {
            "BOOKMARK" => match object["metadata"]["resourceVersion"].as_str() {
                Some(rv) => Step::Bookmark(rv.to_string()),
                None => Step::Print(String::new(), None),
            },
            "ERROR" => {
                if object["code"].as_u64() == Some(410) {
                    Step::Relist
                } else {
                    Step::Failed(object.clone())
                }
            }
            "ADDED" | "MODIFIED" | "DELETED" => {
                if self.format.is_table() {
                    if let Some(cols) = object["columnDefinitions"].as_array().filter(|c| !c.is_empty()) {
                        if self.columns.is_empty() {
                            self.columns = cols.clone();
                        }
                    }
                    let rows = object["rows"].as_array().cloned().unwrap_or_default();
                    let mut text = String::new();
                    let mut rv = None;
                    for row in rows {
                        let (t, r) = self.table_event(kind, &row);
                        text.push_str(&t);
                        rv = r.or(rv);
                    }
                    Step::Print(text, rv)
                } else {
                    let (key, rv) = Self::key(object);
                    if kind != "DELETED" && self.seen.get(&key).is_some_and(|(seen, _)| *seen >= rv) {
                        return Step::Print(String::new(), Some(rv.to_string()));
                    }
                    if kind == "DELETED" {
                        self.seen.remove(&key);
                    } else {
                        self.remember(object);
                    }
                    Step::Print(self.object_text(kind, object), Some(rv.to_string()))
                }
            }
            _ => Step::Print(String::new(), None),
        }
    }

    fn table_event(&mut self, kind: &str, row: &Value) -> (String, Option<String>) {
        let (key, rv) = Self::key(&row["object"]);
        if kind != "DELETED" && self.seen.get(&key).is_some_and(|(seen, _)| *seen >= rv) {
            return (String::new(), Some(rv.to_string()));
        }
        if kind == "DELETED" {
            self.seen.remove(&key);
        } else {
            self.remember(row);
        }
        (self.table_line(kind, row), Some(rv.to_string()))
    }

    fn table_line(&mut self, kind: &str, row: &Value) -> String {
        let mut cells = table::row(&self.columns, row, &self.opts);
        if self.events_column {
            cells.insert(0, kind.to_string());
        }
        let mut text = String::new();
        if self.printed == 0 && !self.opts.no_headers {
            let mut header = table::header(&self.columns, &self.opts);
            if self.events_column {
                header.insert(0, "EVENT".into());
            }
            let grid = table::Grid { header: header.clone(), rows: vec![cells.clone()] };
            self.widths = table::widths(&grid);
            text.push_str(&table::render_line(&header, &self.widths));
        }
        // A cell wider than its column widens the column for the rows that follow.
        for (i, c) in cells.iter().enumerate() {
            if let Some(w) = self.widths.get_mut(i) {
                *w = (*w).max(c.chars().count() + 3);
            }
        }
        self.printed += 1;
        text.push_str(&table::render_line(&cells, &self.widths));
        text
    }

    fn object_text(&mut self, kind: &str, object: &Value) -> String {
        let mut object = object.clone();
        with_type(&mut object, &self.info);
        let text = match &self.format {
            OutputFormat::Yaml => {
                let sep = if self.printed > 0 { "---\n" } else { "" };
                format!("{sep}{}", output::to_yaml(&object))
            }
            OutputFormat::Json => output::to_json(&object),
            OutputFormat::Name => format!("{}\n", output::name_of(&self.info, &object)),
            OutputFormat::JsonPath(_) => {
                self.template.as_ref().and_then(|t| t.render(&object).ok()).unwrap_or_default()
            }
            OutputFormat::Table | OutputFormat::Wide => String::new(),
        };
        let text = if self.events_column && !self.format.is_table() { format!("{kind}\t{text}") } else { text };
        self.printed += 1;
        text
    }

    /// After a 410: the fresh list; prints what changed since (new, modified, deleted).
    pub fn relist(&mut self, list: &Value) -> String {
        let table = self.format.is_table();
        let items: Vec<Value> = if table {
            list["rows"].as_array().cloned().unwrap_or_default()
        } else {
            list["items"].as_array().cloned().unwrap_or_default()
        };
        let mut text = String::new();
        let mut present = std::collections::HashSet::new();
        for item in &items {
            let holder = if table { &item["object"] } else { item };
            let (key, rv) = Self::key(holder);
            present.insert(key.clone());
            let kind = match self.seen.get(&key) {
                Some((seen, _)) if *seen >= rv => continue,
                Some(_) => "MODIFIED",
                None => "ADDED",
            };
            self.remember(item);
            if table {
                text.push_str(&self.table_line(kind, item));
            } else {
                text.push_str(&self.object_text(kind, item));
            }
        }
        let gone: Vec<String> = self.seen.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for key in gone {
            if let Some((_, last)) = self.seen.remove(&key) {
                if table {
                    text.push_str(&self.table_line("DELETED", &last));
                } else {
                    text.push_str(&self.object_text("DELETED", &last));
                }
            }
        }
        text
    }
}

/// Runs a watch for one type (optionally one name) until Ctrl-C.
pub(crate) async fn run(
    session: &mut Session,
    request: &Request,
    namespace: Option<&str>,
    args: &GetArgs,
    format: &OutputFormat,
    out: &mut Out,
) -> Result<()> {
    let info = request.info.clone();
    let ns = if info.namespaced { namespace } else { None };
    let mut args = args.clone();
    if let Some(name) = request.names.first() {
        let by_name = format!("metadata.name={name}");
        args.field_selector = Some(match &args.field_selector {
            Some(f) => format!("{f},{by_name}"),
            None => by_name,
        });
    }
    let table = format.is_table();
    let opts = TableOptions {
        wide: *format == OutputFormat::Wide,
        namespace_column: args.all_namespaces && info.namespaced,
        show_labels: args.show_labels,
        label_columns: args.label_columns.clone(),
        name_prefix: args.show_kind.then(|| format!("{}/", info.qualified_singular())),
        no_headers: args.no_headers,
    };
    let mut printer = WatchPrinter::new(format.clone(), info.clone(), opts, args.output_watch_events);
    session.learn_servers().await;
    let list = list_all(session, &info, ns, &args, table).await?;
    let listed = if table { &list["rows"] } else { &list["items"] };
    if let (Some(name), false) = (request.names.first(), args.watch_only) {
        if listed.as_array().is_none_or(|a| a.is_empty()) {
            // kubectl: `get pod x -w` for a missing pod is a NotFound.
            get_json(session, &info.url_path(ns, Some(name)), false).await?;
        }
    }
    emit(out, &printer.initial(&list, !args.watch_only))?;
    let mut rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let mut unreachable_since: Option<Instant> = None;
    let mut idle_limit = IDLE_LIMIT;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let query = super::get::list_query(
            &args,
            &[
                ("watch", "1".into()),
                ("resourceVersion", rv.clone()),
                ("allowWatchBookmarks", "true".into()),
                ("timeoutSeconds", WATCH_SECONDS.to_string()),
            ],
        );
        let path = format!("{}?{query}", info.url_path(ns, None));
        let opened = session
            .call(|client| {
                let mut builder = http::Request::get(&path);
                if table {
                    builder = builder.header(http::header::ACCEPT, super::get::TABLE_ACCEPT);
                }
                let req = builder.body(Vec::new()).expect("a GET request builds");
                async move { client.request_stream(req).await }
            })
            .await;
        let reader = match opened {
            Ok(r) => {
                unreachable_since = None;
                r
            }
            Err(e) if e.is_connect() => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_LIMIT {
                    return Err(e);
                }
                tracing::debug!(error = %e, "watch: no server reachable, retrying");
                tokio::select! {
                    _ = &mut ctrl_c => return Ok(()),
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                }
                let _ = session.failover().await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut lines = Box::pin(reader).lines();
        loop {
            let next = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                next = tokio::time::timeout(idle_limit, lines.next()) => next,
            };
            match next {
                // The server ended this watch: resume from where we are.
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "watch stream broke; resuming");
                    let _ = session.failover().await;
                    break;
                }
                Err(_) => {
                    tracing::debug!("watch idle too long; failing over");
                    let _ = session.failover().await;
                    break;
                }
                Ok(Some(Ok(line))) => match printer.on_line(&line) {
                    Step::Bookmark(new_rv) => {
                        idle_limit = IDLE_LIMIT_WITH_BOOKMARKS;
                        rv = new_rv;
                    }
                    Step::Print(text, new_rv) => {
                        emit(out, &text)?;
                        if let Some(r) = new_rv {
                            rv = r;
                        }
                    }
                    Step::Relist => {
                        let list = list_all(session, &info, ns, &args, table).await?;
                        emit(out, &printer.relist(&list))?;
                        rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
                        break;
                    }
                    Step::Failed(status) => {
                        return Err(CtlError::Server {
                            reason: status["reason"].as_str().unwrap_or("").into(),
                            code: status["code"].as_u64().unwrap_or(500) as u16,
                            message: status["message"].as_str().unwrap_or("").into(),
                        })
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> ResourceInfo {
        ResourceInfo::for_test("", "Pod", "pods", &["po"], true)
    }

    fn columns() -> Value {
        json!([
            {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0}, {"name": "Status", "priority": 0},
            {"name": "Restarts", "priority": 0}, {"name": "Age", "priority": 0}, {"name": "IP", "priority": 1},
        ])
    }

    fn row(name: &str, rv: u64, status: &str) -> Value {
        json!({"cells": [name, "0/1", status, 0, "1s", "10.0.0.1"],
               "object": {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()}}})
    }

    fn event(kind: &str, row: Value) -> String {
        json!({"type": kind, "object": {"kind": "Table", "columnDefinitions": [], "rows": [row]}}).to_string()
    }

    #[test]
    fn prints_the_table_then_one_row_per_change_and_never_twice() {
        let mut p = WatchPrinter::new(OutputFormat::Table, pods(), TableOptions::default(), false);
        let list = json!({"columnDefinitions": columns(), "rows": [row("web-1", 5, "Pending")], "metadata": {"resourceVersion": "5"}});
        assert_eq!(
            p.initial(&list, true),
            "NAME    READY   STATUS    RESTARTS   AGE\nweb-1   0/1     Pending   0          1s\n"
        );
        let step = p.on_line(&event("MODIFIED", row("web-1", 7, "ContainerCreating")));
        assert_eq!(step, Step::Print("web-1   0/1     ContainerCreating   0          1s\n".into(), Some("7".into())));
        // The same change again (a resumed watch overlapping): nothing printed.
        assert_eq!(
            p.on_line(&event("MODIFIED", row("web-1", 7, "ContainerCreating"))),
            Step::Print(String::new(), Some("7".into()))
        );
        let step = p.on_line(&event("MODIFIED", row("web-1", 9, "Running")));
        assert_eq!(step, Step::Print("web-1   0/1     Running             0          1s\n".into(), Some("9".into())));
        let bookmark = json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}).to_string();
        assert_eq!(p.on_line(&bookmark), Step::Bookmark("12".into()));
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}).to_string();
        assert_eq!(p.on_line(&gone), Step::Relist);
    }

    #[test]
    fn relist_prints_only_the_difference() {
        let mut p = WatchPrinter::new(OutputFormat::Table, pods(), TableOptions::default(), true);
        let list = json!({"columnDefinitions": columns(), "rows": [row("a", 5, "Running"), row("b", 6, "Running")]});
        assert_eq!(
            p.initial(&list, true),
            "EVENT   NAME   READY   STATUS    RESTARTS   AGE\nADDED   a      0/1     Running   0          1s\nADDED   b      0/1     Running   0          1s\n"
        );
        let fresh = json!({"rows": [row("a", 5, "Running"), row("c", 9, "Pending")]});
        assert_eq!(
            p.relist(&fresh),
            "ADDED   c      0/1     Pending   0          1s\nDELETED   b      0/1     Running   0          1s\n"
        );
    }

    #[test]
    fn watch_only_prints_the_header_with_the_first_row() {
        let mut p = WatchPrinter::new(OutputFormat::Table, pods(), TableOptions::default(), false);
        let list = json!({"columnDefinitions": columns(), "rows": [row("a", 5, "Running")]});
        assert_eq!(p.initial(&list, false), "");
        let step = p.on_line(&event("DELETED", row("a", 8, "Terminating")));
        assert_eq!(
            step,
            Step::Print(
                "NAME   READY   STATUS        RESTARTS   AGE\na      0/1     Terminating   0          1s\n".into(),
                Some("8".into())
            )
        );
    }

    #[test]
    fn object_formats_print_each_event() {
        let mut p = WatchPrinter::new(OutputFormat::Name, pods(), TableOptions::default(), false);
        let obj = json!({"metadata": {"name": "a", "namespace": "default", "resourceVersion": "3"}});
        assert_eq!(p.initial(&json!({"items": [obj.clone()]}), true), "pod/a\n");
        let ev = json!({"type": "MODIFIED", "object": {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "4"}}});
        assert_eq!(p.on_line(&ev.to_string()), Step::Print("pod/a\n".into(), Some("4".into())));
    }
}

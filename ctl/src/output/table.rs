//! Human-readable tables from the server's `meta.k8s.io/v1` `Table` (what kubectl prints):
//! priority-0 columns by default, every column with `-o wide`, a NAMESPACE column for
//! `-A`, a LABELS column for `--show-labels`, `-L` label columns, `type/name` prefixes when
//! several types are printed together, and kubectl's tabwriter layout (cells padded by
//! three spaces, minimum cell width six, the last column unpadded).

use serde_json::Value;

/// How to lay out one type's table.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// `-o wide`: also the priority>0 columns.
    pub wide: bool,
    /// `-A`: a leading NAMESPACE column.
    pub namespace_column: bool,
    /// `--show-labels`: a trailing LABELS column.
    pub show_labels: bool,
    /// `-L key,…`: one upper-cased column per label key.
    pub label_columns: Vec<String>,
    /// `deployment.apps/` when several types are printed at once.
    pub name_prefix: Option<String>,
    /// `--no-headers`.
    pub no_headers: bool,
}

/// Header and rows of one table, ready for [`render`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The indices and names of the columns shown, from a Table's `columnDefinitions`.
pub fn visible_columns(columns: &[Value], wide: bool) -> Vec<(usize, String)> {
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or("").to_uppercase()))
        .collect()
}

/// The header line for these columns and options.
pub fn header(columns: &[Value], opts: &TableOptions) -> Vec<String> {
    let mut out = Vec::new();
    if opts.namespace_column {
        out.push("NAMESPACE".to_string());
    }
    out.extend(visible_columns(columns, opts.wide).into_iter().map(|(_, n)| n));
    out.extend(opts.label_columns.iter().map(|l| l.rsplit('/').next().unwrap_or(l).to_uppercase()));
    if opts.show_labels {
        out.push("LABELS".to_string());
    }
    out
}

/// One printed row for a Table row (`cells` + `object` metadata).
pub fn row(columns: &[Value], table_row: &Value, opts: &TableOptions) -> Vec<String> {
    let meta = &table_row["object"]["metadata"];
    let cells = table_row["cells"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    if opts.namespace_column {
        out.push(meta["namespace"].as_str().unwrap_or("").to_string());
    }
    for (i, name) in visible_columns(columns, opts.wide) {
        let mut text = cell_text(cells.get(i).unwrap_or(&Value::Null));
        if name == "NAME" {
            if let Some(prefix) = &opts.name_prefix {
                text = format!("{prefix}{text}");
            }
        }
        out.push(text);
    }
    let labels = meta["labels"].as_object();
    for key in &opts.label_columns {
        out.push(labels.and_then(|l| l.get(key)).and_then(Value::as_str).unwrap_or("").to_string());
    }
    if opts.show_labels {
        out.push(format_labels(labels));
    }
    out
}

/// A Table as a grid of strings.
pub fn grid(table: &Value, opts: &TableOptions) -> Grid {
    let columns = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
    let rows =
        table["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().map(|r| row(&columns, r, opts)).collect();
    Grid { header: if opts.no_headers { vec![] } else { header(&columns, opts) }, rows }
}

/// `a=b,c=d` sorted by key, or `<none>`.
pub fn format_labels(labels: Option<&serde_json::Map<String, Value>>) -> String {
    match labels {
        Some(map) if !map.is_empty() => {
            let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".to_string(),
    }
}

/// A cell as kubectl prints it: strings verbatim, numbers and booleans as text, null as `<none>`.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".to_string(),
        other => other.to_string(),
    }
}

/// Column widths for a grid: widest cell plus padding, at least kubectl's minimum.
pub fn widths(grid: &Grid) -> Vec<usize> {
    let mut widths = vec![0usize; grid.header.len().max(grid.rows.iter().map(Vec::len).max().unwrap_or(0))];
    for line in std::iter::once(&grid.header).chain(grid.rows.iter()) {
        for (i, cell) in line.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    widths.into_iter().map(|w| (w + PADDING).max(MIN_WIDTH)).collect()
}

/// kubectl's tabwriter: `tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)`.
const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

/// Renders a grid with kubectl's tabwriter layout.
pub fn render(grid: &Grid) -> String {
    let widths = widths(grid);
    let mut out = String::new();
    for line in std::iter::once(&grid.header).filter(|h| !h.is_empty()).chain(grid.rows.iter()) {
        out.push_str(&render_line(line, &widths));
    }
    out
}

/// One line laid out with given widths (used by watch, which keeps the first table's widths).
pub fn render_line(line: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in line.iter().enumerate() {
        if i + 1 == line.len() {
            out.push_str(cell);
        } else {
            let width = widths.get(i).copied().unwrap_or(MIN_WIDTH);
            out.push_str(cell);
            let used = cell.chars().count();
            // A cell wider than its column still gets the padding, as tabwriter does.
            let pad = if used >= width { PADDING } else { width - used };
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pods Table as kube-apiserver (and Berth's server) returns it.
    fn pods_table() -> Value {
        let col = |name: &str, priority: i64| json!({"name": name, "type": "string", "priority": priority});
        json!({
            "kind": "Table",
            "columnDefinitions": [col("Name", 0), col("Ready", 0), col("Status", 0), col("Restarts", 0), col("Age", 0),
                                  col("IP", 1), col("Node", 1), col("Nominated Node", 1), col("Readiness Gates", 1)],
            "rows": [
                {"cells": ["web-7d9f8b6c5d-x2x9q", "1/1", "Running", 0, "5m", "10.0.0.12", "node-1", null, null],
                 "object": {"metadata": {"name": "web-7d9f8b6c5d-x2x9q", "namespace": "default",
                                          "labels": {"pod-template-hash": "7d9f8b6c5d", "app": "web"}}}},
                {"cells": ["db-0", "0/1", "CrashLoopBackOff", "4 (20s ago)", "2m", "10.0.0.13", "node-2", null, null],
                 "object": {"metadata": {"name": "db-0", "namespace": "prod"}}},
            ],
        })
    }

    #[test]
    fn golden_default_table() {
        let text = render(&grid(&pods_table(), &TableOptions::default()));
        assert_eq!(
            text,
            "NAME                   READY   STATUS             RESTARTS      AGE\n\
             web-7d9f8b6c5d-x2x9q   1/1     Running            0             5m\n\
             db-0                   0/1     CrashLoopBackOff   4 (20s ago)   2m\n"
        );
    }

    #[test]
    fn golden_wide_all_namespaces_with_labels() {
        let opts = TableOptions { wide: true, namespace_column: true, show_labels: true, ..Default::default() };
        let text = render(&grid(&pods_table(), &opts));
        assert_eq!(
            text,
            "NAMESPACE   NAME                   READY   STATUS             RESTARTS      AGE   IP          NODE     NOMINATED NODE   READINESS GATES   LABELS\n\
             default     web-7d9f8b6c5d-x2x9q   1/1     Running            0             5m    10.0.0.12   node-1   <none>           <none>            app=web,pod-template-hash=7d9f8b6c5d\n\
             prod        db-0                   0/1     CrashLoopBackOff   4 (20s ago)   2m    10.0.0.13   node-2   <none>           <none>            <none>\n"
        );
    }

    #[test]
    fn golden_label_columns_prefix_and_no_headers() {
        let opts = TableOptions {
            label_columns: vec!["app".into(), "example.com/tier".into()],
            name_prefix: Some("pod/".into()),
            ..Default::default()
        };
        assert_eq!(
            render(&grid(&pods_table(), &opts)),
            "NAME                       READY   STATUS             RESTARTS      AGE   APP   TIER\n\
             pod/web-7d9f8b6c5d-x2x9q   1/1     Running            0             5m    web   \n\
             pod/db-0                   0/1     CrashLoopBackOff   4 (20s ago)   2m          \n"
        );
        let opts = TableOptions { no_headers: true, ..Default::default() };
        assert_eq!(
            render(&grid(&pods_table(), &opts)),
            "web-7d9f8b6c5d-x2x9q   1/1   Running            0             5m\n\
             db-0                   0/1   CrashLoopBackOff   4 (20s ago)   2m\n"
        );
    }
}

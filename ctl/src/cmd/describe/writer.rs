//! The text machinery kubectl's describers print through, reproduced so `describe` output
//! lines up byte for byte: Go's `text/tabwriter` (as `tabbedString` configures it: minimum
//! width 0, padding 2, space padding, flushed at every line without a tab and before the
//! Events table), kubectl's `PrefixWriter` levels, and the small formatters every
//! describer shares (multi-line labels and annotations, RFC 1123 times, human ages).

use berth_proto::model::well_known;
use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};
use serde_json::{Map, Value};

/// kubectl's `LEVEL_0`…`LEVEL_4`: two spaces per level.
pub const LEVEL_0: usize = 0;
pub const LEVEL_1: usize = 1;
pub const LEVEL_2: usize = 2;
pub const LEVEL_3: usize = 3;

/// Go's `text/tabwriter` with kubectl describe's settings (`Init(buf, 0, 8, 2, ' ', 0)`).
///
/// Text is split into tab-terminated cells; a column's width is its widest cell plus the
/// padding, computed over each *block* of consecutive lines that have that column. A line
/// with a single cell (no tab) flushes everything buffered, as in Go.
#[derive(Debug, Default)]
pub struct TabWriter {
    out: String,
    /// Completed lines of the current block; each line's last cell is its unterminated text.
    lines: Vec<Vec<String>>,
    /// Cells of the line being written.
    current: Vec<String>,
    /// Text of the cell being written.
    cell: String,
}

/// Cell padding (`tabbedString`'s `padding` argument).
const PADDING: usize = 2;

impl TabWriter {
    /// An empty writer.
    pub fn new() -> TabWriter {
        TabWriter::default()
    }

    /// Appends text (may contain tabs and newlines).
    pub fn write_str(&mut self, text: &str) {
        for ch in text.chars() {
            match ch {
                '\t' => {
                    let cell = std::mem::take(&mut self.cell);
                    self.current.push(cell);
                }
                '\n' => {
                    let cell = std::mem::take(&mut self.cell);
                    self.current.push(cell);
                    let line = std::mem::take(&mut self.current);
                    let single = line.len() == 1;
                    self.lines.push(line);
                    if single {
                        // A one-cell line cannot affect alignment (the last cell of a line
                        // never does), so Go flushes here: blocks end at such lines.
                        self.flush();
                    }
                }
                c => self.cell.push(c),
            }
        }
    }

    /// Formats and emits everything buffered (kubectl calls this before the Events table).
    pub fn flush(&mut self) {
        if !self.cell.is_empty() || !self.current.is_empty() {
            let cell = std::mem::take(&mut self.cell);
            self.current.push(cell);
            let line = std::mem::take(&mut self.current);
            self.lines.push(line);
            // An unterminated last line is written without a newline, as Go does.
            let lines = std::mem::take(&mut self.lines);
            let mut widths = Vec::new();
            format_block(&mut self.out, &lines, &mut widths, 0, lines.len(), true);
        } else {
            let lines = std::mem::take(&mut self.lines);
            let mut widths = Vec::new();
            format_block(&mut self.out, &lines, &mut widths, 0, lines.len(), false);
        }
    }

    /// Flushes and returns the formatted text.
    pub fn finish(mut self) -> String {
        self.flush();
        self.out
    }
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Go's `(*Writer).format`: column widths per block, recursively left to right.
fn format_block(
    out: &mut String,
    lines: &[Vec<String>],
    widths: &mut Vec<usize>,
    line0: usize,
    line1: usize,
    last_unterminated: bool,
) {
    let column = widths.len();
    let mut line0 = line0;
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A cell exists in this column: print the lines before the block, then size it.
        write_lines(out, lines, widths, line0, this, last_unterminated);
        line0 = this;
        let mut w = 0;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(&lines[this][column]) + PADDING);
            this += 1;
        }
        widths.push(w);
        format_block(out, lines, widths, line0, this, last_unterminated);
        widths.pop();
        line0 = this;
    }
    write_lines(out, lines, widths, line0, line1, last_unterminated);
}

fn write_lines(
    out: &mut String,
    lines: &[Vec<String>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    last_unterminated: bool,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j) {
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(cell))));
            }
        }
        if !(last_unterminated && i + 1 == lines.len()) {
            out.push('\n');
        }
    }
}

/// kubectl's `PrefixWriter` over a [`TabWriter`], plus the time zone and clock the
/// describers format times and ages with (fixed in tests, local and now in the CLI).
pub struct Prefix {
    tw: TabWriter,
    /// Plain mode: text is kept as written, tabs and all (kubectl's bare `PrefixWriter`).
    raw: Option<String>,
    pub clock: Clock,
}

/// How times are rendered: the "current" instant for ages and the zone for RFC 1123 times.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: DateTime<Utc>,
    /// None = the local zone (what kubectl uses); Some = a fixed offset (tests).
    pub zone: Option<FixedOffset>,
}

impl Clock {
    /// The real clock in the local zone.
    pub fn system() -> Clock {
        Clock { now: Utc::now(), zone: None }
    }

    /// `Mon, 02 Jan 2006 15:04:05 -0700` (Go's `time.RFC1123Z`) in the clock's zone.
    pub fn rfc1123z(&self, t: DateTime<Utc>) -> String {
        const FORMAT: &str = "%a, %d %b %Y %H:%M:%S %z";
        match self.zone {
            Some(zone) => zone.from_utc_datetime(&t.naive_utc()).format(FORMAT).to_string(),
            None => Local.from_utc_datetime(&t.naive_utc()).format(FORMAT).to_string(),
        }
    }

    /// An RFC 3339 timestamp field rendered as RFC 1123Z; Go's zero time when absent.
    pub fn time_field(&self, v: &Value) -> String {
        match parse_time(v) {
            Some(t) => self.rfc1123z(t),
            None => "Mon, 01 Jan 0001 00:00:00 +0000".to_string(),
        }
    }

    /// kubectl's `translateTimestampSince`: a human age, `<unknown>` without a time.
    pub fn since(&self, v: &Value) -> String {
        match parse_time(v) {
            Some(t) => human_duration(self.now.signed_duration_since(t)),
            None => "<unknown>".to_string(),
        }
    }
}

/// Parses an RFC 3339 timestamp (`metav1.Time` / `MicroTime`).
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str().filter(|s| !s.is_empty())?;
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

pub use berth_proto::model::duration::human_duration;

/// Annotations kubectl never prints (`kubectl.kubernetes.io/last-applied-configuration`).
const SKIP_ANNOTATIONS: &[&str] = &[well_known::ANNOTATION_LAST_APPLIED];
/// kubectl's `maxAnnotationLen`.
const MAX_ANNOTATION_LEN: usize = 140;

impl Prefix {
    /// A writer with this clock.
    pub fn new(clock: Clock) -> Prefix {
        Prefix { tw: TabWriter::new(), raw: None, clock }
    }

    /// A writer that does not align (tabs stay tabs), as `rollout history --revision` prints.
    pub fn raw(clock: Clock) -> Prefix {
        Prefix { tw: TabWriter::new(), raw: Some(String::new()), clock }
    }

    fn put(&mut self, text: &str) {
        match &mut self.raw {
            Some(buf) => buf.push_str(text),
            None => self.tw.write_str(text),
        }
    }

    /// `w.Write(level, text)`: the text indented by two spaces per level.
    pub fn write(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.put("  ");
        }
        self.put(text);
    }

    /// `w.WriteLine(text)`: text and a newline, no indentation.
    pub fn line(&mut self, text: &str) {
        self.put(text);
        self.put("\n");
    }

    /// `w.Flush()`.
    pub fn flush(&mut self) {
        self.tw.flush();
    }

    /// The formatted text.
    pub fn finish(self) -> String {
        match self.raw {
            Some(buf) => buf,
            None => self.tw.finish(),
        }
    }

    /// `printLabelsMultiline`: `Title:\tk=v` then `\tk2=v2` per further label, sorted.
    pub fn labels(&mut self, title: &str, labels: &Value) {
        self.labels_with_indent("", title, labels);
    }

    /// `printLabelsMultilineWithIndent` with `\t` as the inner indent.
    pub fn labels_with_indent(&mut self, initial: &str, title: &str, labels: &Value) {
        self.write(LEVEL_0, &format!("{initial}{title}:\t"));
        let map = string_map(labels);
        if map.is_empty() {
            self.line("<none>");
            return;
        }
        for (i, (k, v)) in map.iter().enumerate() {
            if i != 0 {
                self.write(LEVEL_0, initial);
                self.write(LEVEL_0, "\t");
            }
            self.write(LEVEL_0, &format!("{k}={v}\n"));
        }
    }

    /// `printAnnotationsMultiline`: sorted `k: v`, long or multi-line values folded below
    /// the key and cut at kubectl's maximum length.
    pub fn annotations(&mut self, title: &str, annotations: &Value) {
        self.write(LEVEL_0, &format!("{title}:\t"));
        let map: Vec<(String, String)> =
            string_map(annotations).into_iter().filter(|(k, _)| !SKIP_ANNOTATIONS.contains(&k.as_str())).collect();
        if map.is_empty() {
            self.line("<none>");
            return;
        }
        let indent = "\t";
        for (i, (key, value)) in map.iter().enumerate() {
            if i != 0 {
                self.write(LEVEL_0, indent);
            }
            let value = value.strip_suffix('\n').unwrap_or(value);
            if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
                self.write(LEVEL_0, &format!("{key}:\n"));
                for s in value.split('\n') {
                    self.write(LEVEL_0, &format!("{indent}  {}\n", shorten(s, MAX_ANNOTATION_LEN - 2)));
                }
            } else {
                self.write(LEVEL_0, &format!("{key}: {value}\n"));
            }
        }
    }
}

/// Go's `s[:max] + "..."` for over-long text (byte-based, kept on a char boundary).
fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s.to_string()
    }
}

/// A JSON object of strings as sorted pairs (non-strings rendered as JSON).
pub fn string_map(v: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// `labels.FormatLabels`: `k=v,k2=v2` sorted, `<none>` when empty.
pub fn format_labels(v: &Value) -> String {
    let pairs = string_map(v);
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `metav1.FormatLabelSelector`: matchLabels then matchExpressions, `<none>` for an empty
/// selector (kubectl prints `<none>` for nil and the empty string for `{}`).
pub fn format_label_selector(sel: &Value) -> String {
    if sel.is_null() {
        return "<none>".into();
    }
    let mut parts: Vec<String> = string_map(&sel["matchLabels"]).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = s(&e["key"]);
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let part = match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        // LabelSelectorAsSelector of `{}` is Everything, which prints as "".
        return String::new();
    }
    parts.join(",")
}

/// A string field, empty when absent.
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An integer field, 0 when absent.
pub fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// An array field, empty when absent.
pub fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// An object field, empty when absent.
pub fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Go's `%v` of a bool-ish field (`false` when absent).
pub fn b(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// `<none>` for an empty string.
pub fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text.to_string()
    }
}

/// Go's `%v` of a decoded JSON value, as the generic describer prints leaves.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!("map[{}]", keys.iter().map(|k| format!("{k}:{}", go_value(&m[*k]))).collect::<Vec<_>>().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_aligns_blocks_like_go() {
        let mut tw = TabWriter::new();
        tw.write_str("Name:\tweb\nNamespace:\tdefault\nLabels:\tapp=web\n\ttier=a\nContainers:\n  c:\n    Image:\tx\n");
        assert_eq!(
            tw.finish(),
            "Name:       web\nNamespace:  default\nLabels:     app=web\n            tier=a\nContainers:\n  c:\n    Image:  x\n"
        );
        // A column only spans the consecutive lines that have it.
        let mut tw = TabWriter::new();
        tw.write_str("a:\tb\tc\nlonger:\tx\n\tyy\tz\n");
        assert_eq!(tw.finish(), "a:       b  c\nlonger:  x\n         yy  z\n");
    }

    #[test]
    fn explicit_flush_starts_a_new_block() {
        let mut tw = TabWriter::new();
        tw.write_str("Node-Selectors:\t<none>\n");
        tw.flush();
        tw.write_str("Events:\n  Type\tReason\n  Normal\tX\n");
        assert_eq!(tw.finish(), "Node-Selectors:  <none>\nEvents:\n  Type    Reason\n  Normal  X\n");
    }

    #[test]
    fn labels_and_annotations_fold_like_kubectl() {
        let mut w = Prefix::new(Clock { now: Utc::now(), zone: Some(FixedOffset::east_opt(0).unwrap()) });
        w.labels("Labels", &json!({"b": "2", "a": "1"}));
        w.annotations("Annotations", &json!({"kubectl.kubernetes.io/last-applied-configuration": "{}", "x": "a\nb"}));
        w.labels("Node-Selectors", &json!(null));
        assert_eq!(
            w.finish(),
            "Labels:          a=1\n                 b=2\nAnnotations:     x:\n                   a\n                   b\nNode-Selectors:  <none>\n"
        );
    }

    #[test]
    fn selectors_format_like_apimachinery() {
        assert_eq!(
            format_label_selector(&json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
                {"key": "t", "operator": "In", "values": ["x", "y"]}, {"key": "u", "operator": "DoesNotExist"}]})),
            "a=1,b=2,t in (x,y),!u"
        );
        assert_eq!(format_label_selector(&json!(null)), "<none>");
        assert_eq!(format_labels(&json!({})), "<none>");
    }

    #[test]
    fn times_render_in_rfc1123z() {
        let clock = Clock {
            now: DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").unwrap().with_timezone(&Utc),
            zone: Some(FixedOffset::east_opt(3600).unwrap()),
        };
        assert_eq!(clock.time_field(&json!("2024-05-01T11:58:00Z")), "Wed, 01 May 2024 12:58:00 +0100");
        assert_eq!(clock.since(&json!("2024-05-01T11:58:01Z")), "119s");
        assert_eq!(clock.since(&json!(null)), "<unknown>");
    }
}

//! kubectl's fallback describer for kinds without a dedicated one (every field as an
//! indented tree with "smart" labels), and the Events table every describer ends with.

use serde_json::{Map, Value};

use super::writer::{go_value, i, s, Prefix, LEVEL_0, LEVEL_1};
use super::Related;

/// Fields the generic describer prints elsewhere or never.
const SKIP: &[&str] =
    &[".metadata.managedFields", ".metadata.name", ".metadata.namespace", ".metadata.labels", ".metadata.annotations"];

/// `genericDescriber.Describe`.
pub fn describe_generic(w: &mut Prefix, object: &Value, related: &Related) {
    let meta = &object["metadata"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    if let Some(map) = object.as_object() {
        unstructured(w, LEVEL_0, map, "");
    }
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `printUnstructuredContent`: fields sorted, maps and lists nested one level deeper.
fn unstructured(w: &mut Prefix, level: usize, content: &Map<String, Value>, prefix: &str) {
    let mut fields: Vec<&String> = content.keys().collect();
    fields.sort();
    for field in fields {
        let value = &content[field];
        let path = format!("{prefix}.{field}");
        if SKIP.contains(&path.as_str()) {
            continue;
        }
        match value {
            Value::Object(map) => {
                w.write(level, &format!("{}:\n", smart_label(field)));
                unstructured(w, level + 1, map, &path);
            }
            Value::Array(items) => {
                w.write(level, &format!("{}:\n", smart_label(field)));
                for item in items {
                    match item {
                        Value::Object(map) => unstructured(w, level + 1, map, &path),
                        other => w.write(level + 1, &format!("{}\n", go_value(other))),
                    }
                }
            }
            other => w.write(level, &format!("{}:\t{}\n", smart_label(field), go_value(other))),
        }
    }
}

/// `smartLabelFor`: `creationTimestamp` → `Creation Timestamp`, `uid` → `UID`; fields with
/// characters other than letters and `-` stay as they are.
pub fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    const ACRONYMS: &[&str] = &["API", "URL", "UID", "OSB", "GUID"];
    camel_split(field)
        .into_iter()
        .filter(|p| p != "_")
        .map(|p| {
            let upper = p.to_uppercase();
            if ACRONYMS.contains(&upper.as_str()) {
                upper
            } else {
                let mut chars = p.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `github.com/fatih/camelcase.Split`: runs of one character class, with an upper-case
/// run's last letter moved to a following lower-case run (`PDFLoader` → `PDF Loader`).
fn camel_split(text: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_lowercase() {
            Class::Lower
        } else if c.is_uppercase() {
            Class::Upper
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last: Option<Class> = None;
    for c in text.chars() {
        let k = class(c);
        if Some(k) == last {
            runs.last_mut().expect("a run exists").push(c);
        } else {
            runs.push(vec![c]);
        }
        last = Some(k);
    }
    for n in 0..runs.len().saturating_sub(1) {
        if runs[n].first().is_some_and(|c| c.is_uppercase()) && runs[n + 1].first().is_some_and(|c| c.is_lowercase()) {
            let moved = runs[n].pop().expect("non-empty run");
            runs[n + 1].insert(0, moved);
        }
    }
    runs.into_iter().filter(|r| !r.is_empty()).map(|r| r.into_iter().collect()).collect()
}

/// The instant an event sorts by (`SortableEvents`): series, last, then event time.
fn event_time(e: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    super::writer::parse_time(&e["series"]["lastObservedTime"])
        .or_else(|| super::writer::parse_time(&e["lastTimestamp"]))
        .or_else(|| super::writer::parse_time(&e["eventTime"]))
}

/// `DescribeEvents`: `Events:\t<none>`, or a `Type Reason Age From Message` table (oldest
/// first) in a fresh tab block.
pub fn describe_events(w: &mut Prefix, events: &[Value]) {
    if events.is_empty() {
        w.write(LEVEL_0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut events: Vec<&Value> = events.iter().collect();
    events.sort_by_key(|e| event_time(e));
    w.write(LEVEL_0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(LEVEL_1, "----\t------\t----\t----\t-------\n");
    for e in events {
        let first =
            if e["eventTime"].is_null() { w.clock.since(&e["firstTimestamp"]) } else { w.clock.since(&e["eventTime"]) };
        let interval = if !e["series"].is_null() {
            format!("{} (x{} over {first})", w.clock.since(&e["series"]["lastObservedTime"]), i(&e["series"]["count"]))
        } else if i(&e["count"]) > 1 {
            format!("{} (x{} over {first})", w.clock.since(&e["lastTimestamp"]), i(&e["count"]))
        } else {
            first
        };
        let source = match s(&e["source"]["component"]) {
            "" => s(&e["reportingComponent"]),
            c => c,
        };
        w.write(
            LEVEL_1,
            &format!("{}\t{}\t{interval}\t{source}\t{}\n", s(&e["type"]), s(&e["reason"]), s(&e["message"]).trim()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_labels_match_kubectl() {
        assert_eq!(smart_label("apiVersion"), "API Version");
        assert_eq!(smart_label("creationTimestamp"), "Creation Timestamp");
        assert_eq!(smart_label("uid"), "UID");
        assert_eq!(smart_label("leaseDurationSeconds"), "Lease Duration Seconds");
        assert_eq!(smart_label("holderIdentity"), "Holder Identity");
        assert_eq!(smart_label("HTTPServer"), "HTTP Server");
        assert_eq!(smart_label("v1beta1"), "v1beta1");
        assert_eq!(smart_label("app.kubernetes.io/name"), "app.kubernetes.io/name");
    }
}

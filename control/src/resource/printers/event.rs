//! Printers of Events.

use berth_proto::model::duration::human_duration;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static EVENT: Printer = Printer { columns: EVENT_COLS, row: event_row };

static EVENT_COLS: &[Col] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the \
         object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid \
         JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object \
         reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" \
         (where \"name\" refers to the name of the container that triggered the event) or if no container name is \
         specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have \
         some well-defined way of referencing a part of an object.",
    ),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Col { name: "Name", ty: "string", format: "name", desc: D_NAME, priority: 1 },
];

// Events (core/v1 field names, with events.k8s.io/v1 names as fallbacks: both share one printer)
// ---------------------------------------------------------------------------------------------

fn first_present<'a>(obj: &'a Value, paths: &[&[&str]]) -> Option<&'a Value> {
    paths.iter().find_map(|p| at(obj, p))
}

fn first_text<'a>(obj: &'a Value, paths: &[&[&str]]) -> &'a str {
    paths.iter().map(|p| text(obj, p)).find(|s| !s.is_empty()).unwrap_or_default()
}

fn event_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_ts = time(obj, &["firstTimestamp"]).or_else(|| time(obj, &["deprecatedFirstTimestamp"]));
    let first = match first_ts {
        Some(t) => human_duration(now - t),
        None => since(time(obj, &["eventTime"]), now),
    };
    let last_ts = time(obj, &["lastTimestamp"]).or_else(|| time(obj, &["deprecatedLastTimestamp"]));
    let mut last = match last_ts {
        Some(t) => human_duration(now - t),
        None => first.clone(),
    };
    let mut count = first_present(obj, &[&["count"], &["deprecatedCount"]]).map_or(0, int_of);
    if let Some(series) = at(obj, &["series"]) {
        last = since(time(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let involved = first_present(obj, &[&["involvedObject"], &["regarding"]]);
    let kind = involved.map(|o| text(o, &["kind"])).unwrap_or_default().to_lowercase();
    let target = match involved.map(|o| text(o, &["name"])).unwrap_or_default() {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let field_path = involved.map(|o| text(o, &["fieldPath"])).unwrap_or_default();

    let component =
        first_text(obj, &[&["source", "component"], &["deprecatedSource", "component"], &["reportingController"]]);
    let host = first_text(obj, &[&["source", "host"], &["deprecatedSource", "host"], &["reportingInstance"]]);
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    let message = first_text(obj, &[&["message"], &["note"]]).trim();

    vec![
        Value::from(last),
        Value::from(text(obj, &["type"])),
        Value::from(text(obj, &["reason"])),
        Value::from(target),
        Value::from(field_path),
        Value::from(source),
        Value::from(message),
        Value::from(first),
        Value::from(count),
        name(obj),
    ]
}

// ---------------------------------------------------------------------------------------------

//! Printing objects: `-o yaml|json|name|jsonpath=…|wide` and the default table. Tables come
//! from the server (see [`table`]); the other formats are rendered here from the objects.

pub mod jsonpath;
pub mod table;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{CtlError, Result};
use crate::resources::ResourceInfo;

/// What `-o` asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// The server's table (default).
    Table,
    /// The table with every column.
    Wide,
    Yaml,
    Json,
    /// `type.group/name`.
    Name,
    /// A kubectl JSONPath template.
    JsonPath(String),
}

impl OutputFormat {
    /// Parses `-o`'s value (`None` = default table).
    pub fn parse(flag: Option<&str>) -> Result<OutputFormat> {
        let Some(flag) = flag else {
            return Ok(OutputFormat::Table);
        };
        Ok(match flag {
            "" => OutputFormat::Table,
            "wide" => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            "name" => OutputFormat::Name,
            other => match other.split_once('=') {
                Some(("jsonpath", template)) => {
                    jsonpath::Template::parse(template)?;
                    OutputFormat::JsonPath(template.to_string())
                }
                _ => {
                    return Err(CtlError::usage(format!(
                        "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,jsonpath,name,wide,yaml"
                    )))
                }
            },
        })
    }

    /// True for the formats printed from the server's Table.
    pub fn is_table(&self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// JSON the way kubectl prints it (4-space indent, trailing newline).
pub fn to_json(value: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser).expect("a JSON value serializes");
    let mut text = String::from_utf8(buf).expect("JSON is UTF-8");
    text.push('\n');
    text
}

/// YAML the way kubectl prints it.
pub fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(value).expect("a JSON value serializes as YAML")
}

/// kubectl's wrapper for several objects: `kind: List`.
pub fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// `deployment.apps/web`.
pub fn name_of(info: &ResourceInfo, object: &Value) -> String {
    format!("{}/{}", info.qualified_singular(), object["metadata"]["name"].as_str().unwrap_or(""))
}

/// Renders objects (with their types) in a non-table format. A single requested object
/// prints bare; anything else prints as a `List`, as kubectl does.
pub fn render_objects(format: &OutputFormat, objects: &[(ResourceInfo, Value)], single: bool) -> Result<String> {
    let value = || {
        if single && objects.len() == 1 {
            objects[0].1.clone()
        } else {
            list_of(objects.iter().map(|(_, o)| o.clone()).collect())
        }
    };
    Ok(match format {
        OutputFormat::Yaml => to_yaml(&value()),
        OutputFormat::Json => to_json(&value()),
        OutputFormat::Name => objects.iter().map(|(info, o)| format!("{}\n", name_of(info, o))).collect(),
        OutputFormat::JsonPath(template) => jsonpath::Template::parse(template)?.render(&value())?,
        OutputFormat::Table | OutputFormat::Wide => {
            return Err(CtlError::usage("internal: tables are rendered from the server's Table"));
        }
    })
}

/// Whether to colour output: only on a terminal, and never when `NO_COLOR` is set.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

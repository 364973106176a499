//! TEMPORARY shim until registry/validate lands.
#![allow(dead_code, unused_variables)]
use serde_json::Value;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    TooMany,
    Forbidden,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub error_type: ErrorType,
    pub field: String,
    pub value: Option<String>,
    pub detail: String,
}
impl FieldError {
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
}
pub fn default_object(kind: &str, obj: &mut Value) {}
pub fn validate_create(kind: &str, obj: &Value) -> Vec<FieldError> {
    vec![]
}
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    vec![]
}

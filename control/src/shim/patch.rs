//! TEMPORARY shim until api/patch lands.
#![allow(dead_code, unused_variables)]
use serde_json::Value;
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PatchError {
    #[error("{0}")] Malformed(String),
    #[error("{0}")] Invalid(String),
    #[error("Apply failed with {} conflict(s)", .0.len())] Conflicts(Vec<(String, String)>),
}
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> { Err(PatchError::Malformed("shim".into())) }
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> { let mut d = doc.clone(); json_patch::merge(&mut d, patch); Ok(d) }
pub fn strategic_merge_patch(kind: &str, doc: &Value, patch: &Value) -> Result<Value, PatchError> { merge_patch(doc, patch) }
pub fn server_side_apply(kind: &str, live: Option<&Value>, applied: &Value, manager: &str, force: bool, now_rfc3339: &str) -> Result<Value, PatchError> { match live { Some(l) => merge_patch(l, applied), None => Ok(applied.clone()) } }
pub fn record_update(kind: &str, old: Option<&Value>, new: &mut Value, manager: &str, now_rfc3339: &str) {}

//! Name and key checks as field errors: the syntax itself (`is_*`, [`NameRule`]) lives in
//! `berth_proto::model::names`, shared with `berthctl`; this module turns its messages into
//! `FieldError`s at a field path, as apimachinery's `Validate*` helpers do.

use super::json::q;
use super::{Errs, FieldError};

pub(crate) use berth_proto::model::names::*;

/// Appends one `Invalid` error per message, the common shape of name checks.
pub(crate) fn push_all(errs: &mut Errs, field: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(field, q(value), &m));
    }
}

/// `ValidateDNS1123Label` on a required field: empty is `Required`, else each syntax error.
pub(crate) fn validate_dns1123_label(errs: &mut Errs, field: &str, value: &str) {
    push_all(errs, field, value, is_dns1123_label(value));
}

/// `ValidateLabels`: keys must be qualified names and values label values; the field path is
/// the map itself (Kubernetes does not index into it).
pub(crate) fn validate_labels(errs: &mut Errs, field: &str, labels: &[(&str, &str)]) {
    for (k, v) in labels {
        push_all(errs, field, k, is_qualified_name(k));
        push_all(errs, field, v, is_label_value(v));
    }
}

/// `ValidateAnnotations`: keys are qualified names (checked lower-cased), total size bounded.
pub(crate) fn validate_annotations(errs: &mut Errs, field: &str, annotations: &[(&str, &str)]) {
    let mut total = 0usize;
    for (k, v) in annotations {
        push_all(errs, field, k, is_qualified_name(&k.to_lowercase()));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE));
    }
}

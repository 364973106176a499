//! A kind's strategy: everything about an object that depends on its kind, as kube-apiserver's
//! registry strategies (`PrepareForCreate`, `Validate`, `ValidateUpdate`, defaulting, the table
//! convertor and the strategic-merge patch schema).
//!
//! Each `ResourceInfo` points at its kind's [`Strategy`] (the strategies themselves are in
//! `resource::kinds`), so the request path reaches a kind's rules through one field of the
//! resource it already holds, never by matching the kind's name; adding a kind is one
//! strategy plus one table entry.

use serde_json::Value;

use super::kinds::keep_as_given;
use super::patch_schema::Ty;
use super::printers::Printer;
use super::validate::defaults::default_nothing;
use super::validate::{no_update_rules, FieldError};

pub struct Strategy {
    /// Fills absent fields (kube-apiserver's `SetDefaults_*` plus the create-shaping steps
    /// of its strategies). Called on objects only.
    pub defaults: fn(&mut Value),
    /// The kind's create rules (metadata included), appended to the error list.
    pub validate: fn(&Value, &mut Vec<FieldError>),
    /// The kind's extra rules on update (immutable fields), given old and new.
    pub validate_update: fn(&Value, &Value, &mut Vec<FieldError>),
    /// Decodes into the kind's typed form and back (`typed::round_trip`).
    pub decode: fn(&Value) -> Result<Value, String>,
    /// Create-time resets, as `PrepareForCreate`: what the status starts as.
    pub prepare_for_create: fn(&mut Value),
    /// Whether objects carry `metadata.generation` (bumped when the spec changes).
    pub has_generation: bool,
    /// The root of the kind's strategic-merge type graph (patches and managedFields).
    pub patch_schema: Ty,
    /// The kind's server-side table printer.
    pub printer: &'static Printer,
    /// How a delete proceeds.
    pub deletion: Deletion,
}

/// How an object's deletion proceeds (the registry carries it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Gone at once unless finalizers hold it.
    Finalizers,
    /// A bound, unfinished pod waits its grace period for its agent to stop it.
    GracefulPod,
    /// `Terminating` until its contents and `spec.finalizers` are gone.
    Namespace,
}

impl Strategy {
    /// The strategy of a kind with nothing special about it: no defaults, no update rules,
    /// kept as given on create, a generation, the generic patch schema, deleted at once
    /// unless finalizers hold it. Kinds override what differs with struct update syntax.
    pub const fn of(
        validate: fn(&Value, &mut Vec<FieldError>),
        decode: fn(&Value) -> Result<Value, String>,
        printer: &'static Printer,
    ) -> Strategy {
        Strategy {
            defaults: default_nothing,
            validate,
            validate_update: no_update_rules,
            decode,
            prepare_for_create: keep_as_given,
            has_generation: true,
            patch_schema: Ty::GenericRoot,
            printer,
            deletion: Deletion::Finalizers,
        }
    }
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategy").field("patch_schema", &self.patch_schema).finish_non_exhaustive()
    }
}

//! Which Ingresses Berth's built-in ingress proxy serves: those of the IngressClass
//! [`CLASS`], and those naming no class while `berth` is the default class (the
//! `ingressclass.kubernetes.io/is-default-class` annotation) — decided once here for the
//! leader (which publishes their addresses) and the agents (which proxy them).

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The IngressClass the agents serve.
pub const CLASS: &str = "berth";
/// Its `spec.controller`.
pub const CONTROLLER: &str = "berth.dev/ingress";
/// The annotation that makes an IngressClass the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether Berth serves `ingress` (pure).
pub fn is_served(ingress: &Ingress, classes: &[&IngressClass]) -> bool {
    match ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
        Some(class) => class == CLASS,
        None => classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(CLASS)
                && c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).map(String::as_str)
                    == Some("true")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(class: Option<&str>) -> Ingress {
        serde_json::from_value(json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": class}})).unwrap()
    }

    fn class(default: bool) -> IngressClass {
        let annotations = if default { json!({DEFAULT_CLASS_ANNOTATION: "true"}) } else { json!({}) };
        serde_json::from_value(json!({"metadata": {"name": CLASS, "annotations": annotations},
                                      "spec": {"controller": CONTROLLER}}))
        .unwrap()
    }

    #[test]
    fn served_by_class_name_or_as_the_default_class() {
        assert!(is_served(&ingress(Some("berth")), &[]));
        assert!(!is_served(&ingress(Some("nginx")), &[&class(true)]));
        assert!(is_served(&ingress(None), &[&class(true)]));
        assert!(!is_served(&ingress(None), &[&class(false)]));
    }
}

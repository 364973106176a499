//! The Kubernetes message schemas (the descriptor set `build.rs` compiles from
//! `protos/k8s`) and which message an `apiVersion`/`kind` is.
//!
//! Package names follow the vendored files: `api.<group>.<version>` for `k8s.io/api`
//! groups (`api.core.v1.Pod`, `api.rbac.v1.Role`), and the apimachinery, apiextensions,
//! aggregator and metrics packages by their Go paths. Kinds every group version serves
//! (`Status`, `WatchEvent`, `DeleteOptions`, `Table`…) come from `meta/v1`, as apimachinery
//! registers them into each.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// The package of meta/v1.
pub const META_V1: &str = "apimachinery.pkg.apis.meta.v1";

/// All the Kubernetes messages.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).expect("build.rs wrote a valid descriptor set"))
}

fn known(name: &str) -> MessageDescriptor {
    pool().get_message_by_name(name).unwrap_or_else(|| panic!("the Kubernetes schemas define {name}"))
}

/// `runtime.Unknown`, the envelope.
pub fn unknown() -> MessageDescriptor {
    known("apimachinery.pkg.runtime.Unknown")
}

/// `runtime.TypeMeta`, the envelope's type.
pub fn type_meta() -> MessageDescriptor {
    known("apimachinery.pkg.runtime.TypeMeta")
}

/// `runtime.RawExtension`, an embedded object.
pub fn raw_extension() -> MessageDescriptor {
    known("apimachinery.pkg.runtime.RawExtension")
}

/// `meta/v1` `WatchEvent`, one event of a watch stream.
pub fn watch_event() -> MessageDescriptor {
    known(&format!("{META_V1}.WatchEvent"))
}

/// The protobuf package of an API group version, or `None` for groups without one.
pub fn package(group: &str, version: &str) -> Option<String> {
    let package = match group {
        "" => "api.core".to_string(),
        "meta.k8s.io" => "apimachinery.pkg.apis.meta".to_string(),
        "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".to_string(),
        "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".to_string(),
        "metrics.k8s.io" => "metrics.pkg.apis.metrics".to_string(),
        "internal.apiserver.k8s.io" => "api.apiserverinternal".to_string(),
        // k8s.io/api names a package by the group's first label: `rbac` for
        // rbac.authorization.k8s.io, `flowcontrol` for flowcontrol.apiserver.k8s.io.
        g if !g.contains('.') || g.ends_with(".k8s.io") => format!("api.{}", g.split('.').next()?),
        _ => return None,
    };
    Some(format!("{package}.{version}"))
}

/// The message of `kind` in `api_version` (`apps/v1`, `v1`), if Kubernetes has one.
pub fn message_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    // A kind is a Go type name; anything else could reach into nested names.
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let pool = pool();
    package(group, version)
        .and_then(|p| pool.get_message_by_name(&format!("{p}.{kind}")))
        .or_else(|| pool.get_message_by_name(&format!("{META_V1}.{kind}")))
}

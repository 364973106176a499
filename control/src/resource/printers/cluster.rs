//! Printers of Cluster objects: Nodes and Namespaces.

use std::collections::BTreeSet;

use berth_proto::model::well_known;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static NODE: Printer = Printer { columns: NODE_COLS, row: node_row };
pub static NAMESPACE: Printer = Printer { columns: NAMESPACE_COLS, row: namespace_row };

const D_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. \
                                More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field \
                                is declared as mergeable, but the merge key is not sufficiently unique, which can \
                                cause data corruption when it is merged. Callers should instead use a \
                                full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should \
                                assume that addresses can change during the lifetime of a Node. However, there are \
                                some exceptions where this may not be possible, such as Pods that inherit a Node's \
                                address in its own status or consumers of the downward API (status.hostIP).";

static NODE_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", D_NODE_ADDRESSES),
    wide("External-IP", "string", D_NODE_ADDRESSES),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

static NAMESPACE_COLS: &[Col] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

// Cluster objects
// ---------------------------------------------------------------------------------------------

fn node_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition is reported; the last entry of a type wins, as Go's map does.
    let ready = list(obj, &["status", "conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(obj, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let roles: BTreeSet<&str> = at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix(well_known::LABEL_NODE_ROLE_PREFIX) {
                (!role.is_empty()).then_some(role)
            } else if k == well_known::LABEL_ROLE {
                v.as_str().filter(|r| !r.is_empty())
            } else {
                None
            }
        })
        .collect();
    let roles = or_none(&roles.into_iter().collect::<Vec<_>>().join(","));

    let address = |ty: &str| {
        list(obj, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == ty)
            .map_or_else(|| "<none>".to_string(), |a| text(a, &["address"]).to_string())
    };
    let info = |field: &str| match text(obj, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(obj),
        Value::from(status.join(",")),
        Value::from(roles),
        age(obj, now),
        Value::from(text(obj, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(info("osImage")),
        Value::from(info("kernelVersion")),
        Value::from(info("containerRuntimeVersion")),
    ]
}

fn namespace_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = match text(obj, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(obj), Value::from(phase), age(obj, now)]
}

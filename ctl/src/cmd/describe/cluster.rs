//! kubectl's Node and Namespace describers.

use std::collections::BTreeMap;

use berth_proto::model::well_known;
use serde_json::Value;

use super::writer::{arr, b, s, string_map, Prefix, LEVEL_0, LEVEL_1};
use super::{describe_events, Related};
use berth_proto::model::quantity::{canonical_or_verbatim, Quantity};

/// `describeNode`. `related.pods` are the node's non-terminated pods; `related.lease` its
/// node Lease (or the error fetching it).
pub fn describe_node(w: &mut Prefix, node: &Value, related: &Related) {
    let meta = &node["metadata"];
    let spec = &node["spec"];
    let status = &node["status"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    let roles = node_roles(&meta["labels"]);
    w.write(LEVEL_0, &format!("Roles:\t{}\n", if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    let created = w.clock.time_field(&meta["creationTimestamp"]);
    w.write(LEVEL_0, &format!("CreationTimestamp:\t{created}\n"));
    taints(w, arr(&spec["taints"]));
    w.write(LEVEL_0, &format!("Unschedulable:\t{}\n", b(&spec["unschedulable"])));
    match &related.lease {
        Some(Ok(lease)) => {
            let l = &lease["spec"];
            w.write(LEVEL_0, "Lease:\n");
            let holder = l["holderIdentity"].as_str().unwrap_or("<unset>").to_string();
            w.write(LEVEL_1, &format!("HolderIdentity:\t{holder}\n"));
            let acquire =
                if l["acquireTime"].is_null() { "<unset>".into() } else { w.clock.time_field(&l["acquireTime"]) };
            w.write(LEVEL_1, &format!("AcquireTime:\t{acquire}\n"));
            let renew = if l["renewTime"].is_null() { "<unset>".into() } else { w.clock.time_field(&l["renewTime"]) };
            w.write(LEVEL_1, &format!("RenewTime:\t{renew}\n"));
        }
        Some(Err(e)) => w.write(LEVEL_0, &format!("Lease:\tFailed to get lease: {e}\n")),
        None => {}
    }
    let conditions = arr(&status["conditions"]);
    if !conditions.is_empty() {
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n");
        w.write(LEVEL_1, "----\t------\t-----------------\t------------------\t------\t-------\n");
        for c in conditions {
            let heartbeat = w.clock.time_field(&c["lastHeartbeatTime"]);
            let transition = w.clock.time_field(&c["lastTransitionTime"]);
            w.write(
                LEVEL_1,
                &format!(
                    "{} \t{} \t{heartbeat} \t{transition} \t{} \t{}\n",
                    s(&c["type"]),
                    s(&c["status"]),
                    s(&c["reason"]),
                    s(&c["message"])
                ),
            );
        }
    }
    w.write(LEVEL_0, "Addresses:\n");
    for a in arr(&status["addresses"]) {
        w.write(LEVEL_1, &format!("{}:\t{}\n", s(&a["type"]), s(&a["address"])));
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        let list = string_map(&status[field]);
        if !list.is_empty() {
            w.write(LEVEL_0, &format!("{title}:\n"));
            for (name, q) in list {
                w.write(LEVEL_0, &format!("  {name}:\t{}\n", canonical_or_verbatim(&q)));
            }
        }
    }
    let info = &status["nodeInfo"];
    w.write(LEVEL_0, "System Info:\n");
    for (title, field) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ] {
        w.write(LEVEL_0, &format!("  {title}:\t{}\n", s(&info[field])));
    }
    if !s(&spec["podCIDR"]).is_empty() {
        w.write(LEVEL_0, &format!("PodCIDR:\t{}\n", s(&spec["podCIDR"])));
    }
    let cidrs: Vec<&str> = arr(&spec["podCIDRs"]).iter().map(s).collect();
    if !cidrs.is_empty() {
        w.write(LEVEL_0, &format!("PodCIDRs:\t{}\n", cidrs.join(",")));
    }
    if !s(&spec["providerID"]).is_empty() {
        w.write(LEVEL_0, &format!("ProviderID:\t{}\n", s(&spec["providerID"])));
    }
    describe_node_resource(w, node, &related.pods);
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role`.
fn node_roles(labels: &Value) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in string_map(labels) {
        if let Some(role) = k.strip_prefix(well_known::LABEL_NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == well_known::LABEL_ROLE && !v.is_empty() {
            roles.push(v);
        }
    }
    roles.sort();
    roles.dedup();
    roles
}

/// `printNodeTaintsMultiline`: sorted by effect then key, `key=value:Effect`.
fn taints(w: &mut Prefix, list: &[Value]) {
    w.write(LEVEL_0, "Taints:\t");
    if list.is_empty() {
        w.line("<none>");
        return;
    }
    let mut list: Vec<&Value> = list.iter().collect();
    list.sort_by_key(|t| format!("{},{}", s(&t["effect"]), s(&t["key"])));
    for (n, t) in list.iter().enumerate() {
        if n != 0 {
            w.write(LEVEL_0, "\t");
        }
        let value = if s(&t["value"]).is_empty() { String::new() } else { format!("={}", s(&t["value"])) };
        w.write(LEVEL_0, &format!("{}{value}:{}\n", s(&t["key"]), s(&t["effect"])));
    }
}

/// A pod's effective requests and limits (`resourcehelper.PodRequestsAndLimits`): the sum
/// over containers, at least the largest init container, plus the pod overhead.
pub fn pod_requests_and_limits(pod: &Value) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let spec = &pod["spec"];
    let total = |field: &str| {
        let mut sum: BTreeMap<String, Quantity> = BTreeMap::new();
        for c in arr(&spec["containers"]) {
            for (name, q) in string_map(&c["resources"][field]) {
                if let Ok(q) = Quantity::parse(&q) {
                    sum.entry(name).or_default().add(&q);
                }
            }
        }
        for c in arr(&spec["initContainers"]) {
            for (name, q) in string_map(&c["resources"][field]) {
                if let Ok(q) = Quantity::parse(&q) {
                    let entry = sum.entry(name).or_default();
                    if q.cmp(entry).is_gt() {
                        *entry = q;
                    }
                }
            }
        }
        for (name, q) in string_map(&spec["overhead"]) {
            if let Ok(q) = Quantity::parse(&q) {
                sum.entry(name).or_default().add(&q);
            }
        }
        sum
    };
    (total("requests"), total("limits"))
}

/// `describeNodeResource`: the pods table and the allocated totals.
fn describe_node_resource(w: &mut Prefix, node: &Value, pods: &[Value]) {
    w.write(LEVEL_0, &format!("Non-terminated Pods:\t({} in total)\n", pods.len()));
    w.write(LEVEL_1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n");
    w.write(LEVEL_1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n");
    let status = &node["status"];
    let allocatable =
        if string_map(&status["allocatable"]).is_empty() { &status["capacity"] } else { &status["allocatable"] };
    let alloc = |name: &str| allocatable[name].as_str().and_then(|text| Quantity::parse(text).ok()).unwrap_or_default();
    let (alloc_cpu, alloc_mem, alloc_eph) =
        (alloc("cpu").milli_value(), alloc("memory").value(), alloc("ephemeral-storage").value());
    let percent = |part: i64, whole: i64| if whole == 0 { 0 } else { (part as f64 / whole as f64 * 100.0) as i64 };
    let get = |m: &BTreeMap<String, Quantity>, name: &str| m.get(name).copied().unwrap_or_default();
    let mut total_req: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut total_lim: BTreeMap<String, Quantity> = BTreeMap::new();
    for pod in pods {
        let (req, lim) = pod_requests_and_limits(pod);
        let (cr, cl, mr, ml) = (get(&req, "cpu"), get(&lim, "cpu"), get(&req, "memory"), get(&lim, "memory"));
        let age = w.clock.since(&pod["metadata"]["creationTimestamp"]);
        w.write(
            LEVEL_1,
            &format!(
                "{}\t{}\t\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{age}\n",
                s(&pod["metadata"]["namespace"]),
                s(&pod["metadata"]["name"]),
                cr.canonical(),
                percent(cr.milli_value(), alloc_cpu),
                cl.canonical(),
                percent(cl.milli_value(), alloc_cpu),
                mr.canonical(),
                percent(mr.value(), alloc_mem),
                ml.canonical(),
                percent(ml.value(), alloc_mem),
            ),
        );
        for (name, q) in req {
            total_req.entry(name).or_default().add(&q);
        }
        for (name, q) in lim {
            total_lim.entry(name).or_default().add(&q);
        }
    }
    w.write(LEVEL_0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n");
    w.write(LEVEL_1, "Resource\tRequests\tLimits\n");
    w.write(LEVEL_1, "--------\t--------\t------\n");
    // (resource, allocatable in the unit kubectl divides by, that unit of a quantity)
    type Unit = fn(&Quantity) -> i64;
    let rows: [(&str, i64, Unit); 3] = [
        ("cpu", alloc_cpu, Quantity::milli_value),
        ("memory", alloc_mem, Quantity::value),
        ("ephemeral-storage", alloc_eph, Quantity::value),
    ];
    for (name, whole, unit) in rows {
        let (r, l) = (get(&total_req, name), get(&total_lim, name));
        w.write(
            LEVEL_1,
            &format!(
                "{name}\t{} ({}%)\t{} ({}%)\n",
                r.canonical(),
                percent(unit(&r), whole),
                l.canonical(),
                percent(unit(&l), whole)
            ),
        );
    }
    // Extended resources (not cpu/memory/storage/pods, no hugepages) print their totals.
    for (name, _) in string_map(allocatable) {
        let standard = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage" | "storage" | "pods")
            || name.starts_with("requests.")
            || name.starts_with("limits.");
        if standard {
            continue;
        }
        let (r, l) = (get(&total_req, &name), get(&total_lim, &name));
        if name.starts_with("hugepages-") {
            let whole = alloc(&name).value();
            w.write(
                LEVEL_1,
                &format!(
                    "{name}\t{} ({}%)\t{} ({}%)\n",
                    r.canonical(),
                    percent(r.value(), whole),
                    l.canonical(),
                    percent(l.value(), whole)
                ),
            );
        } else {
            w.write(LEVEL_1, &format!("{name}\t{}\t{}\n", r.canonical(), l.canonical()));
        }
    }
}

/// `describeNamespace`: `quotas` / `limit_ranges` are None when the server does not serve
/// those types (kubectl then omits the section).
pub fn describe_namespace(w: &mut Prefix, ns: &Value, related: &Related) {
    let meta = &ns["metadata"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, &format!("Status:\t{}\n", s(&ns["status"]["phase"])));
    let conditions = arr(&ns["status"]["conditions"]);
    if !conditions.is_empty() {
        w.write(LEVEL_0, "Conditions:\n");
        w.write(LEVEL_1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n");
        w.write(LEVEL_1, "----\t------\t------------------\t------\t-------\n");
        for c in conditions {
            let t = w.clock.time_field(&c["lastTransitionTime"]);
            w.write(
                LEVEL_1,
                &format!("{}\t{}\t{t}\t{}\t{}\n", s(&c["type"]), s(&c["status"]), s(&c["reason"]), s(&c["message"])),
            );
        }
    }
    if let Some(quotas) = &related.quotas {
        w.write(LEVEL_0, "\n");
        if quotas.is_empty() {
            w.write(LEVEL_0, "No resource quota.\n");
        } else {
            let mut quotas: Vec<&Value> = quotas.iter().collect();
            quotas.sort_by(|a, b| s(&a["metadata"]["name"]).cmp(s(&b["metadata"]["name"])));
            w.write(LEVEL_0, "Resource Quotas\n");
            for q in quotas {
                w.write(LEVEL_1, &format!("Name:\t{}\n", s(&q["metadata"]["name"])));
                let mut scopes: Vec<&str> = arr(&q["spec"]["scopes"]).iter().map(s).collect();
                if !scopes.is_empty() {
                    scopes.sort();
                    w.write(LEVEL_1, &format!("Scopes:\t{}\n", scopes.join(", ")));
                }
                w.write(LEVEL_1, "Resource\tUsed\tHard\n");
                w.write(LEVEL_1, "--------\t---\t---\n");
                for (name, hard) in string_map(&q["status"]["hard"]) {
                    let used =
                        q["status"]["used"][&name].as_str().map(canonical_or_verbatim).unwrap_or_else(|| "0".into());
                    w.write(LEVEL_1, &format!("{name}\t{used}\t{}\n", canonical_or_verbatim(&hard)));
                }
            }
        }
    }
    if let Some(ranges) = &related.limit_ranges {
        w.write(LEVEL_0, "\n");
        if ranges.is_empty() {
            w.write(LEVEL_0, "No LimitRange resource.\n");
        } else {
            w.write(
                LEVEL_0,
                "Resource Limits\n Type\tResource\tMin\tMax\tDefault Request\tDefault Limit\tMax Limit/Request Ratio\n",
            );
            w.write(LEVEL_0, " ----\t--------\t---\t---\t---------------\t-------------\t-----------------------\n");
            for lr in ranges {
                for item in arr(&lr["spec"]["limits"]) {
                    let mut names: Vec<String> = Vec::new();
                    for field in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
                        names.extend(string_map(&item[field]).into_iter().map(|(k, _)| k));
                    }
                    names.sort();
                    names.dedup();
                    for name in names {
                        let get = |field: &str| {
                            item[field][&name].as_str().map(canonical_or_verbatim).unwrap_or_else(|| "-".into())
                        };
                        w.write(
                            LEVEL_0,
                            &format!(
                                " {}\t{name}\t{}\t{}\t{}\t{}\t{}\n",
                                s(&item["type"]),
                                get("min"),
                                get("max"),
                                get("defaultRequest"),
                                get("default"),
                                get("maxLimitRequestRatio")
                            ),
                        );
                    }
                }
            }
        }
    }
}

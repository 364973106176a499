//! kubectl's Pod describer and the pieces other workload describers share: containers
//! (image, ports, command, state, readiness, restarts, resources, probes, environment,
//! mounts), volumes, tolerations, QoS class, and the `Pod Template:` section.

use serde_json::Value;

use super::writer::{arr, b, i, obj, or_none, s, string_map, Prefix, LEVEL_0, LEVEL_1, LEVEL_2, LEVEL_3};
use super::{describe_events, Related};
use berth_proto::model::quantity::{canonical_or_verbatim, Quantity};

/// `describePod`.
pub fn describe_pod(w: &mut Prefix, pod: &Value, related: &Related) {
    let meta = &pod["metadata"];
    let spec = &pod["spec"];
    let status = &pod["status"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    if let Some(p) = spec["priority"].as_i64() {
        w.write(LEVEL_0, &format!("Priority:\t{p}\n"));
    }
    if !s(&spec["priorityClassName"]).is_empty() {
        w.write(LEVEL_0, &format!("Priority Class Name:\t{}\n", s(&spec["priorityClassName"])));
    }
    if !s(&spec["runtimeClassName"]).is_empty() {
        w.write(LEVEL_0, &format!("Runtime Class Name:\t{}\n", s(&spec["runtimeClassName"])));
    }
    if !s(&spec["serviceAccountName"]).is_empty() {
        w.write(LEVEL_0, &format!("Service Account:\t{}\n", s(&spec["serviceAccountName"])));
    }
    if s(&spec["nodeName"]).is_empty() {
        w.write(LEVEL_0, "Node:\t<none>\n");
    } else {
        w.write(LEVEL_0, &format!("Node:\t{}/{}\n", s(&spec["nodeName"]), s(&status["hostIP"])));
    }
    if !status["startTime"].is_null() {
        let t = w.clock.time_field(&status["startTime"]);
        w.write(LEVEL_0, &format!("Start Time:\t{t}\n"));
    }
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    let phase = s(&status["phase"]);
    if !meta["deletionTimestamp"].is_null() && phase != "Failed" && phase != "Succeeded" {
        let since = w.clock.since(&meta["deletionTimestamp"]);
        w.write(LEVEL_0, &format!("Status:\tTerminating (lasts {since})\n"));
        w.write(LEVEL_0, &format!("Termination Grace Period:\t{}s\n", i(&meta["deletionGracePeriodSeconds"])));
    } else {
        w.write(LEVEL_0, &format!("Status:\t{phase}\n"));
    }
    if !s(&status["reason"]).is_empty() {
        w.write(LEVEL_0, &format!("Reason:\t{}\n", s(&status["reason"])));
    }
    if !s(&status["message"]).is_empty() {
        w.write(LEVEL_0, &format!("Message:\t{}\n", s(&status["message"])));
    }
    let seccomp = &spec["securityContext"]["seccompProfile"];
    if !seccomp.is_null() {
        w.write(LEVEL_0, &format!("SeccompProfile:\t{}\n", s(&seccomp["type"])));
        if s(&seccomp["type"]) == "Localhost" {
            w.write(LEVEL_0, &format!("LocalhostProfile:\t{}\n", s(&seccomp["localhostProfile"])));
        }
    }
    w.write(LEVEL_0, &format!("IP:\t{}\n", s(&status["podIP"])));
    let ips = arr(&status["podIPs"]);
    if ips.is_empty() {
        w.write(LEVEL_0, "IPs:\t<none>\n");
    } else {
        w.write(LEVEL_0, "IPs:\n");
        for ip in ips {
            w.write(LEVEL_1, &format!("IP:\t{}\n", s(&ip["ip"])));
        }
    }
    if let Some(controller) = controlled_by(meta) {
        w.write(LEVEL_0, &format!("Controlled By:\t{controller}\n"));
    }
    if !s(&status["nominatedNodeName"]).is_empty() {
        w.write(LEVEL_0, &format!("NominatedNodeName:\t{}\n", s(&status["nominatedNodeName"])));
    }
    if !spec["resources"].is_null() {
        w.write(LEVEL_0, "Resources:\n");
        describe_resources(w, &spec["resources"], LEVEL_1);
    }
    if !arr(&spec["initContainers"]).is_empty() {
        describe_containers(
            w,
            "Init Containers",
            arr(&spec["initContainers"]),
            Some(arr(&status["initContainerStatuses"])),
            Some(pod),
            "",
        );
    }
    describe_containers(
        w,
        "Containers",
        arr(&spec["containers"]),
        Some(arr(&status["containerStatuses"])),
        Some(pod),
        "",
    );
    if !arr(&spec["ephemeralContainers"]).is_empty() {
        describe_containers(
            w,
            "Ephemeral Containers",
            arr(&spec["ephemeralContainers"]),
            Some(arr(&status["ephemeralContainerStatuses"])),
            Some(pod),
            "",
        );
    }
    if !arr(&spec["readinessGates"]).is_empty() {
        w.write(LEVEL_0, "Readiness Gates:\n  Type\tStatus\n");
        for g in arr(&spec["readinessGates"]) {
            let ty = s(&g["conditionType"]);
            let st = arr(&status["conditions"])
                .iter()
                .find(|c| s(&c["type"]) == ty)
                .map(|c| s(&c["status"]).to_string())
                .unwrap_or_else(|| "<none>".into());
            w.write(LEVEL_1, &format!("{ty} \t{st} \n"));
        }
    }
    let conditions = arr(&status["conditions"]);
    if !conditions.is_empty() {
        w.write(LEVEL_0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w.write(LEVEL_1, &format!("{} \t{} \n", s(&c["type"]), s(&c["status"])));
        }
    }
    describe_volumes(w, arr(&spec["volumes"]), "");
    w.write(LEVEL_0, &format!("QoS Class:\t{}\n", qos_class(pod)));
    w.labels("Node-Selectors", &spec["nodeSelector"]);
    tolerations(w, "Tolerations", arr(&spec["tolerations"]), "");
    topology_spread(w, arr(&spec["topologySpreadConstraints"]), "");
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `printController`: `Kind/name` of the controller owner.
pub fn controlled_by(meta: &Value) -> Option<String> {
    arr(&meta["ownerReferences"])
        .iter()
        .find(|r| b(&r["controller"]))
        .map(|r| format!("{}/{}", s(&r["kind"]), s(&r["name"])))
}

/// `describeContainers`: `statuses` is None for pod templates (no status lines at all).
/// `pod` resolves downward-API environment values (kubectl's `EnvValueRetriever`).
pub fn describe_containers(
    w: &mut Prefix,
    label: &str,
    containers: &[Value],
    statuses: Option<&[Value]>,
    pod: Option<&Value>,
    space: &str,
) {
    let none = if containers.is_empty() { " <none>" } else { "" };
    w.write(LEVEL_0, &format!("{space}{label}:{none}\n"));
    for c in containers {
        let name = s(&c["name"]);
        let status = statuses.and_then(|st| st.iter().find(|x| s(&x["name"]) == name));
        let name_indent = if space.is_empty() { "" } else { " " };
        w.write(LEVEL_1, &format!("{name_indent}{name}:\n"));
        if let Some(st) = status {
            w.write(LEVEL_2, &format!("Container ID:\t{}\n", s(&st["containerID"])));
        }
        w.write(LEVEL_2, &format!("Image:\t{}\n", s(&c["image"])));
        if let Some(st) = status {
            w.write(LEVEL_2, &format!("Image ID:\t{}\n", s(&st["imageID"])));
        }
        let ports = arr(&c["ports"]);
        let port_list = |host: bool| -> String {
            ports
                .iter()
                .map(|p| {
                    let n = if host { i(&p["hostPort"]) } else { i(&p["containerPort"]) };
                    format!("{n}/{}", protocol(p))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let container_ports = port_list(false);
        if container_ports.contains(',') {
            w.write(LEVEL_2, &format!("Ports:\t{container_ports}\n"));
        } else {
            w.write(LEVEL_2, &format!("Port:\t{}\n", or_none(&container_ports)));
        }
        let host_ports = port_list(true);
        if host_ports.contains(',') {
            w.write(LEVEL_2, &format!("Host Ports:\t{host_ports}\n"));
        } else {
            w.write(LEVEL_2, &format!("Host Port:\t{}\n", or_none(&host_ports)));
        }
        let seccomp = &c["securityContext"]["seccompProfile"];
        if !seccomp.is_null() {
            w.write(LEVEL_2, &format!("SeccompProfile:\t{}\n", s(&seccomp["type"])));
            if s(&seccomp["type"]) == "Localhost" {
                w.write(LEVEL_3, &format!("LocalhostProfile:\t{}\n", s(&seccomp["localhostProfile"])));
            }
        }
        for (field, title) in [("command", "Command"), ("args", "Args")] {
            let items = arr(&c[field]);
            if !items.is_empty() {
                w.write(LEVEL_2, &format!("{title}:\n"));
                for item in items {
                    for line in s(item).split('\n') {
                        w.write(LEVEL_3, &format!("{line}\n"));
                    }
                }
            }
        }
        if let Some(st) = status {
            describe_state(w, "State", &st["state"]);
            if !st["lastState"]["terminated"].is_null() {
                describe_state(w, "Last State", &st["lastState"]);
            }
            w.write(LEVEL_2, &format!("Ready:\t{}\n", if b(&st["ready"]) { "True" } else { "False" }));
            w.write(LEVEL_2, &format!("Restart Count:\t{}\n", i(&st["restartCount"])));
        }
        describe_resources(w, &c["resources"], LEVEL_2);
        for (field, title) in
            [("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"), ("startupProbe", "Startup")]
        {
            if !c[field].is_null() {
                w.write(LEVEL_2, &format!("{title}:\t{}\n", describe_probe(&c[field])));
            }
        }
        if !arr(&c["envFrom"]).is_empty() {
            w.write(LEVEL_2, "Environment Variables from:\n");
            for e in arr(&c["envFrom"]) {
                let (from, r) = if !e["configMapRef"].is_null() {
                    ("ConfigMap", &e["configMapRef"])
                } else {
                    ("Secret", &e["secretRef"])
                };
                let optional = b(&r["optional"]);
                let prefix = s(&e["prefix"]);
                if prefix.is_empty() {
                    w.write(LEVEL_3, &format!("{}\t{from}\tOptional: {optional}\n", s(&r["name"])));
                } else {
                    w.write(
                        LEVEL_3,
                        &format!("{}\t{from} with prefix '{prefix}'\tOptional: {optional}\n", s(&r["name"])),
                    );
                }
            }
        }
        describe_env(w, c, pod);
        describe_mounts(w, c);
    }
}

fn protocol(port: &Value) -> &str {
    match s(&port["protocol"]) {
        "" => "TCP",
        p => p,
    }
}

/// `describeStatus`.
fn describe_state(w: &mut Prefix, title: &str, state: &Value) {
    if !state["running"].is_null() {
        w.write(LEVEL_2, &format!("{title}:\tRunning\n"));
        let t = w.clock.time_field(&state["running"]["startedAt"]);
        w.write(LEVEL_3, &format!("Started:\t{t}\n"));
    } else if !state["waiting"].is_null() {
        w.write(LEVEL_2, &format!("{title}:\tWaiting\n"));
        if !s(&state["waiting"]["reason"]).is_empty() {
            w.write(LEVEL_3, &format!("Reason:\t{}\n", s(&state["waiting"]["reason"])));
        }
    } else if !state["terminated"].is_null() {
        let t = &state["terminated"];
        w.write(LEVEL_2, &format!("{title}:\tTerminated\n"));
        if !s(&t["reason"]).is_empty() {
            w.write(LEVEL_3, &format!("Reason:\t{}\n", s(&t["reason"])));
        }
        if !s(&t["message"]).is_empty() {
            w.write(LEVEL_3, &format!("Message:\t{}\n", s(&t["message"])));
        }
        w.write(LEVEL_3, &format!("Exit Code:\t{}\n", i(&t["exitCode"])));
        if i(&t["signal"]) > 0 {
            w.write(LEVEL_3, &format!("Signal:\t{}\n", i(&t["signal"])));
        }
        let started = w.clock.time_field(&t["startedAt"]);
        let finished = w.clock.time_field(&t["finishedAt"]);
        w.write(LEVEL_3, &format!("Started:\t{started}\n"));
        w.write(LEVEL_3, &format!("Finished:\t{finished}\n"));
    } else {
        w.write(LEVEL_2, &format!("{title}:\tWaiting\n"));
    }
}

/// `describeResources`: Limits then Requests, resource names sorted.
pub fn describe_resources(w: &mut Prefix, resources: &Value, level: usize) {
    for (field, title) in [("limits", "Limits"), ("requests", "Requests")] {
        let list = string_map(&resources[field]);
        if !list.is_empty() {
            w.write(level, &format!("{title}:\n"));
        }
        for (name, q) in list {
            w.write(level + 1, &format!("{name}:\t{}\n", canonical_or_verbatim(&q)));
        }
    }
}

/// `DescribeProbe`.
pub fn describe_probe(p: &Value) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        i(&p["initialDelaySeconds"]),
        i(&p["timeoutSeconds"]),
        i(&p["periodSeconds"]),
        i(&p["successThreshold"]),
        i(&p["failureThreshold"])
    );
    if !p["exec"].is_null() {
        let cmd: Vec<&str> = arr(&p["exec"]["command"]).iter().map(s).collect();
        return format!("exec [{}] {attrs}", cmd.join(" "));
    }
    if !p["httpGet"].is_null() {
        let h = &p["httpGet"];
        let scheme = s(&h["scheme"]).to_ascii_lowercase();
        let port = int_or_string(&h["port"]);
        let host = s(&h["host"]);
        let authority = if port.is_empty() {
            host.to_string()
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let scheme_part = if scheme.is_empty() { String::new() } else { format!("{scheme}:") };
        return format!("http-get {scheme_part}//{authority}{} {attrs}", s(&h["path"]));
    }
    if !p["tcpSocket"].is_null() {
        let t = &p["tcpSocket"];
        return format!("tcp-socket {}:{} {attrs}", s(&t["host"]), int_or_string(&t["port"]));
    }
    if !p["grpc"].is_null() {
        let g = &p["grpc"];
        return format!("grpc <pod>:{} {} {attrs}", i(&g["port"]), s(&g["service"]));
    }
    format!("unknown {attrs}")
}

/// An `IntOrString` as text.
pub fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// `describeContainerEnvVars` (field references are shown without resolving them).
fn describe_env(w: &mut Prefix, c: &Value, pod: Option<&Value>) {
    let env = arr(&c["env"]);
    let none = if env.is_empty() { "\t<none>" } else { "" };
    w.write(LEVEL_2, &format!("Environment:{none}\n"));
    for e in env {
        let name = s(&e["name"]);
        let from = &e["valueFrom"];
        if from.is_null() {
            for (n, line) in s(&e["value"]).split('\n').enumerate() {
                if n == 0 {
                    w.write(LEVEL_3, &format!("{name}:\t{line}\n"));
                } else {
                    w.write(LEVEL_3, &format!("\t{line}\n"));
                }
            }
        } else if !from["fieldRef"].is_null() {
            let f = &from["fieldRef"];
            let value = pod.map(|p| field_ref_value(p, s(&f["fieldPath"]))).unwrap_or_default();
            w.write(LEVEL_3, &format!("{name}:\t{value} ({}:{})\n", s(&f["apiVersion"]), s(&f["fieldPath"])));
        } else if !from["resourceFieldRef"].is_null() {
            let r = &from["resourceFieldRef"];
            let resource = s(&r["resource"]);
            let mut value = resource_field_value(c, r);
            if value == "0" && (resource == "limits.cpu" || resource == "limits.memory") {
                value = "node allocatable".into();
            }
            w.write(LEVEL_3, &format!("{name}:\t{value} ({resource})\n"));
        } else if !from["secretKeyRef"].is_null() {
            let r = &from["secretKeyRef"];
            w.write(
                LEVEL_3,
                &format!(
                    "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                    s(&r["key"]),
                    s(&r["name"]),
                    b(&r["optional"])
                ),
            );
        } else if !from["configMapKeyRef"].is_null() {
            let r = &from["configMapKeyRef"];
            w.write(
                LEVEL_3,
                &format!(
                    "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                    s(&r["key"]),
                    s(&r["name"]),
                    b(&r["optional"])
                ),
            );
        }
    }
}

/// The value of a downward-API field path on a pod (`metadata.labels['app']`, `status.podIP`).
fn field_ref_value(pod: &Value, path: &str) -> String {
    for (prefix, field) in [("metadata.labels['", "labels"), ("metadata.annotations['", "annotations")] {
        if let Some(key) = path.strip_prefix(prefix).and_then(|k| k.strip_suffix("']")) {
            return s(&pod["metadata"][field][key]).to_string();
        }
    }
    let mut v = pod;
    for part in path.split('.') {
        v = &v[part];
    }
    s(v).to_string()
}

/// kubectl's `ExtractContainerResourceValue`: a container's request or limit in units of
/// the divisor, rounded up.
fn resource_field_value(c: &Value, r: &Value) -> String {
    let resource = s(&r["resource"]);
    let Some((kind, name)) = resource.split_once('.') else { return String::new() };
    let q = c["resources"][kind][name].as_str().and_then(|text| Quantity::parse(text).ok()).unwrap_or_default();
    let divisor = r["divisor"].as_str().and_then(|text| Quantity::parse(text).ok()).filter(|d| d.nanos() != 0);
    let divisor = divisor.unwrap_or_else(|| Quantity::parse("1").expect("a literal quantity"));
    let (num, den) =
        if name == "cpu" { (q.milli_value(), divisor.milli_value()) } else { (q.value(), divisor.value()) };
    if den == 0 {
        return String::new();
    }
    // i128: a capped quantity (2^63-1 units) plus a divisor must not overflow.
    ((i128::from(num) + i128::from(den) - 1).div_euclid(i128::from(den))).to_string()
}

/// `describeContainerVolumes`: mounts sorted by path.
fn describe_mounts(w: &mut Prefix, c: &Value) {
    let mut mounts: Vec<&Value> = arr(&c["volumeMounts"]).iter().collect();
    let none = if mounts.is_empty() { "\t<none>" } else { "" };
    w.write(LEVEL_2, &format!("Mounts:{none}\n"));
    mounts.sort_by(|a, b| s(&a["mountPath"]).cmp(s(&b["mountPath"])));
    for m in mounts {
        let mut flags = vec![if b(&m["readOnly"]) { "ro".to_string() } else { "rw".to_string() }];
        if !s(&m["subPath"]).is_empty() {
            flags.push(format!("path={:?}", s(&m["subPath"])));
        }
        w.write(LEVEL_3, &format!("{} from {} ({})\n", s(&m["mountPath"]), s(&m["name"]), flags.join(",")));
    }
    let mut devices: Vec<&Value> = arr(&c["volumeDevices"]).iter().collect();
    if !devices.is_empty() {
        w.write(LEVEL_2, "Devices:\n");
        devices.sort_by(|a, b| s(&a["devicePath"]).cmp(s(&b["devicePath"])));
        for d in devices {
            w.write(LEVEL_3, &format!("{} from {}\n", s(&d["devicePath"]), s(&d["name"])));
        }
    }
}

/// `describeVolumes` for the volume sources Berth runs (others print their type name).
pub fn describe_volumes(w: &mut Prefix, volumes: &[Value], space: &str) {
    if volumes.is_empty() {
        w.write(LEVEL_0, &format!("{space}Volumes:\t<none>\n"));
        return;
    }
    w.write(LEVEL_0, &format!("{space}Volumes:\n"));
    for v in volumes {
        let name_indent = if space.is_empty() { "" } else { " " };
        w.write(LEVEL_1, &format!("{name_indent}{}:\n", s(&v["name"])));
        if !v["hostPath"].is_null() {
            let h = &v["hostPath"];
            w.write(
                LEVEL_2,
                &format!(
                    "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
                    s(&h["path"]),
                    or_none(s(&h["type"]))
                ),
            );
        } else if !v["emptyDir"].is_null() {
            let e = &v["emptyDir"];
            let size = match e["sizeLimit"].as_str().and_then(|text| Quantity::parse(text).ok()) {
                Some(q) if q.nanos() > 0 => q.canonical(),
                _ => "<unset>".into(),
            };
            w.write(
                LEVEL_2,
                &format!(
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{size}\n",
                    s(&e["medium"])
                ),
            );
        } else if !v["secret"].is_null() {
            let x = &v["secret"];
            w.write(
                LEVEL_2,
                &format!(
                    "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                    s(&x["secretName"]),
                    b(&x["optional"])
                ),
            );
        } else if !v["configMap"].is_null() {
            let x = &v["configMap"];
            w.write(
                LEVEL_2,
                &format!(
                    "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                    s(&x["name"]),
                    b(&x["optional"])
                ),
            );
        } else if !v["persistentVolumeClaim"].is_null() {
            let x = &v["persistentVolumeClaim"];
            w.write(
                LEVEL_2,
                &format!(
                    "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
                    s(&x["claimName"]),
                    b(&x["readOnly"])
                ),
            );
        } else if !v["downwardAPI"].is_null() {
            w.write(LEVEL_2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n");
            for item in arr(&v["downwardAPI"]["items"]) {
                if !item["fieldRef"].is_null() {
                    w.write(LEVEL_3, &format!("{} -> {}\n", s(&item["fieldRef"]["fieldPath"]), s(&item["path"])));
                }
                if !item["resourceFieldRef"].is_null() {
                    w.write(
                        LEVEL_3,
                        &format!("{} -> {}\n", s(&item["resourceFieldRef"]["resource"]), s(&item["path"])),
                    );
                }
            }
        } else if !v["projected"].is_null() {
            w.write(LEVEL_2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n");
            for src in arr(&v["projected"]["sources"]) {
                if !src["secret"].is_null() {
                    w.write(
                        LEVEL_2,
                        &format!(
                            "SecretName:\t{}\n    Optional:\t{}\n",
                            s(&src["secret"]["name"]),
                            b(&src["secret"]["optional"])
                        ),
                    );
                } else if !src["downwardAPI"].is_null() {
                    w.write(LEVEL_2, "DownwardAPI:\ttrue\n");
                } else if !src["configMap"].is_null() {
                    w.write(
                        LEVEL_2,
                        &format!(
                            "ConfigMapName:\t{}\n    Optional:\t{}\n",
                            s(&src["configMap"]["name"]),
                            b(&src["configMap"]["optional"])
                        ),
                    );
                } else if !src["serviceAccountToken"].is_null() {
                    w.write(
                        LEVEL_2,
                        &format!("TokenExpirationSeconds:\t{}\n", i(&src["serviceAccountToken"]["expirationSeconds"])),
                    );
                }
            }
        } else {
            w.write(LEVEL_1, "<unknown>\n");
        }
    }
}

/// `printPodTolerationsMultiline` (sorted by key).
pub fn tolerations(w: &mut Prefix, title: &str, list: &[Value], initial: &str) {
    w.write(LEVEL_0, &format!("{initial}{title}:\t"));
    if list.is_empty() {
        w.line("<none>");
        return;
    }
    let mut list: Vec<&Value> = list.iter().collect();
    list.sort_by(|a, b| s(&a["key"]).cmp(s(&b["key"])));
    for (n, t) in list.iter().enumerate() {
        if n != 0 {
            w.write(LEVEL_0, initial);
            w.write(LEVEL_0, "\t");
        }
        let mut text = s(&t["key"]).to_string();
        if !s(&t["value"]).is_empty() {
            text.push_str(&format!("={}", s(&t["value"])));
        }
        if !s(&t["effect"]).is_empty() {
            text.push_str(&format!(":{}", s(&t["effect"])));
        }
        if s(&t["operator"]) == "Exists" && s(&t["value"]).is_empty() {
            if !s(&t["key"]).is_empty() || !s(&t["effect"]).is_empty() {
                text.push_str(" op=Exists");
            } else {
                text.push_str("op=Exists");
            }
        }
        if let Some(secs) = t["tolerationSeconds"].as_i64() {
            text.push_str(&format!(" for {secs}s"));
        }
        w.write(LEVEL_0, &format!("{text}\n"));
    }
}

/// `describeTopologySpreadConstraints`.
fn topology_spread(w: &mut Prefix, list: &[Value], space: &str) {
    if list.is_empty() {
        return;
    }
    let mut list: Vec<&Value> = list.iter().collect();
    list.sort_by(|a, b| s(&a["topologyKey"]).cmp(s(&b["topologyKey"])));
    w.write(LEVEL_0, &format!("{space}Topology Spread Constraints:\t"));
    for (n, t) in list.iter().enumerate() {
        if n != 0 {
            w.write(LEVEL_0, space);
            w.write(LEVEL_0, "\t");
        }
        let mut text = format!(
            "{}:{} when max skew {} is exceeded",
            s(&t["topologyKey"]),
            s(&t["whenUnsatisfiable"]),
            i(&t["maxSkew"])
        );
        if !t["labelSelector"].is_null() {
            text.push_str(&format!(" for selector {}", super::writer::format_label_selector(&t["labelSelector"])));
        }
        w.write(LEVEL_0, &format!("{text}\n"));
    }
}

/// `DescribePodTemplate`: the template of a Deployment or ReplicaSet.
pub fn describe_pod_template(w: &mut Prefix, template: &Value) {
    w.write(LEVEL_0, "Pod Template:\n");
    if template.is_null() {
        w.write(LEVEL_1, "<unset>");
        return;
    }
    let meta = &template["metadata"];
    let spec = &template["spec"];
    w.labels("  Labels", &meta["labels"]);
    if !obj(&meta["annotations"]).is_empty() {
        w.annotations("  Annotations", &meta["annotations"]);
    }
    if !s(&spec["serviceAccountName"]).is_empty() {
        w.write(LEVEL_1, &format!("Service Account:\t{}\n", s(&spec["serviceAccountName"])));
    }
    if !arr(&spec["initContainers"]).is_empty() {
        describe_containers(w, "Init Containers", arr(&spec["initContainers"]), None, None, "  ");
    }
    describe_containers(w, "Containers", arr(&spec["containers"]), None, None, "  ");
    describe_volumes(w, arr(&spec["volumes"]), "  ");
    topology_spread(w, arr(&spec["topologySpreadConstraints"]), "  ");
    if !s(&spec["priorityClassName"]).is_empty() {
        w.write(LEVEL_1, &format!("Priority Class Name:\t{}\n", s(&spec["priorityClassName"])));
    }
    w.labels("  Node-Selectors", &spec["nodeSelector"]);
    tolerations(w, "  Tolerations", arr(&spec["tolerations"]), "");
}

/// The QoS class: `status.qosClass` when set, otherwise computed as Kubernetes does.
pub fn qos_class(pod: &Value) -> String {
    let set = s(&pod["status"]["qosClass"]);
    if !set.is_empty() {
        return set.to_string();
    }
    berth_proto::pod_qos_class(pod).to_string()
}

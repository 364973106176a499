//! kubectl's Service describer (endpoints come from the core `Endpoints` object, which
//! is what Berth's endpoints controller maintains) and the small config describers.

use serde_json::Value;

use super::pod::int_or_string;
use super::writer::{arr, format_labels, i, s, string_map, Prefix, LEVEL_0};
use super::{describe_events, Related};

/// `describeService`. `related.endpoints` is the Service's Endpoints object, if any.
pub fn describe_service(w: &mut Prefix, svc: &Value, related: &Related) {
    let meta = &svc["metadata"];
    let spec = &svc["spec"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, &format!("Selector:\t{}\n", selector_text(&spec["selector"])));
    w.write(LEVEL_0, &format!("Type:\t{}\n", s(&spec["type"])));
    if !s(&spec["ipFamilyPolicy"]).is_empty() {
        w.write(LEVEL_0, &format!("IP Family Policy:\t{}\n", s(&spec["ipFamilyPolicy"])));
    }
    let families: Vec<&str> = arr(&spec["ipFamilies"]).iter().map(s).collect();
    w.write(
        LEVEL_0,
        &format!("IP Families:\t{}\n", if families.is_empty() { "<none>".to_string() } else { families.join(",") }),
    );
    w.write(LEVEL_0, &format!("IP:\t{}\n", s(&spec["clusterIP"])));
    let ips: Vec<&str> = arr(&spec["clusterIPs"]).iter().map(s).collect();
    w.write(LEVEL_0, &format!("IPs:\t{}\n", if ips.is_empty() { "<none>".to_string() } else { ips.join(",") }));
    let external: Vec<&str> = arr(&spec["externalIPs"]).iter().map(s).collect();
    if !external.is_empty() {
        w.write(LEVEL_0, &format!("External IPs:\t{}\n", external.join(",")));
    }
    if !s(&spec["loadBalancerIP"]).is_empty() {
        w.write(LEVEL_0, &format!("Desired LoadBalancer IP:\t{}\n", s(&spec["loadBalancerIP"])));
    }
    if !s(&spec["externalName"]).is_empty() {
        w.write(LEVEL_0, &format!("External Name:\t{}\n", s(&spec["externalName"])));
    }
    let ingress = arr(&svc["status"]["loadBalancer"]["ingress"]);
    if !ingress.is_empty() {
        let list: Vec<String> = ingress
            .iter()
            .map(|g| {
                if !s(&g["ip"]).is_empty() {
                    match g["ipMode"].as_str() {
                        Some(mode) => format!("{} ({mode})", s(&g["ip"])),
                        None => s(&g["ip"]).to_string(),
                    }
                } else {
                    s(&g["hostname"]).to_string()
                }
            })
            .collect();
        w.write(LEVEL_0, &format!("LoadBalancer Ingress:\t{}\n", list.join(", ")));
    }
    for port in arr(&spec["ports"]) {
        let name = match s(&port["name"]) {
            "" => "<unset>",
            n => n,
        };
        let protocol = match s(&port["protocol"]) {
            "" => "TCP",
            p => p,
        };
        w.write(LEVEL_0, &format!("Port:\t{name}\t{}/{protocol}\n", i(&port["port"])));
        let target = if port["targetPort"].is_null() {
            i(&port["port"]).to_string()
        } else {
            int_or_string(&port["targetPort"])
        };
        w.write(LEVEL_0, &format!("TargetPort:\t{target}/{protocol}\n"));
        if i(&port["nodePort"]) != 0 {
            w.write(LEVEL_0, &format!("NodePort:\t{name}\t{}/{protocol}\n", i(&port["nodePort"])));
        }
        w.write(
            LEVEL_0,
            &format!("Endpoints:\t{}\n", format_endpoints(related.endpoints.as_ref(), Some(s(&port["name"])))),
        );
    }
    w.write(LEVEL_0, &format!("Session Affinity:\t{}\n", s(&spec["sessionAffinity"])));
    if !s(&spec["externalTrafficPolicy"]).is_empty() {
        w.write(LEVEL_0, &format!("External Traffic Policy:\t{}\n", s(&spec["externalTrafficPolicy"])));
    }
    if !s(&spec["internalTrafficPolicy"]).is_empty() {
        w.write(LEVEL_0, &format!("Internal Traffic Policy:\t{}\n", s(&spec["internalTrafficPolicy"])));
    }
    if i(&spec["healthCheckNodePort"]) != 0 {
        w.write(LEVEL_0, &format!("HealthCheck NodePort:\t{}\n", i(&spec["healthCheckNodePort"])));
    }
    let ranges: Vec<&str> = arr(&spec["loadBalancerSourceRanges"]).iter().map(s).collect();
    if !ranges.is_empty() {
        w.write(LEVEL_0, &format!("LoadBalancer Source Ranges:\t{}\n", ranges.join(",")));
    }
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// `labels.FormatLabels` of a Service selector (`<none>` when empty).
fn selector_text(sel: &Value) -> String {
    format_labels(sel)
}

/// kubectl's `formatEndpoints`: up to three `ip:port`, then `+ N more...`; `<none>` when
/// there is no Endpoints object or it has no subsets. `port_name` limits to one port.
pub fn format_endpoints(endpoints: Option<&Value>, port_name: Option<&str>) -> String {
    let Some(ep) = endpoints else { return "<none>".into() };
    let subsets = arr(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        if ports.is_empty() {
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                }
                if !more {
                    list.push(s(&a["ip"]).to_string());
                }
                count += 1;
            }
        } else {
            for p in ports {
                if port_name.is_some_and(|n| n != s(&p["name"])) {
                    continue;
                }
                for a in addresses {
                    if list.len() == MAX {
                        more = true;
                    }
                    if !more {
                        let ip = s(&a["ip"]);
                        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                        list.push(format!("{host}:{}", i(&p["port"])));
                    }
                    count += 1;
                }
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

/// `describeEndpoints`.
pub fn describe_endpoints(w: &mut Prefix, ep: &Value, related: &Related) {
    let meta = &ep["metadata"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, "Subsets:\n");
    for ss in arr(&ep["subsets"]) {
        let ips = |field: &str| -> String {
            let list: Vec<&str> = arr(&ss[field]).iter().map(|a| s(&a["ip"])).collect();
            if list.is_empty() {
                "<none>".into()
            } else {
                list.join(",")
            }
        };
        w.write(super::writer::LEVEL_1, &format!("Addresses:\t{}\n", ips("addresses")));
        w.write(super::writer::LEVEL_1, &format!("NotReadyAddresses:\t{}\n", ips("notReadyAddresses")));
        let ports = arr(&ss["ports"]);
        if !ports.is_empty() {
            w.write(super::writer::LEVEL_1, "Ports:\n");
            w.write(super::writer::LEVEL_2, "Name\tPort\tProtocol\n");
            w.write(super::writer::LEVEL_2, "----\t----\t--------\n");
            for p in ports {
                let name = match s(&p["name"]) {
                    "" => "<unset>",
                    n => n,
                };
                w.write(super::writer::LEVEL_2, &format!("{name}\t{}\t{}\n", i(&p["port"]), s(&p["protocol"])));
            }
        }
        w.write(LEVEL_0, "\n");
    }
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// kubectl's ConfigMap describer (keys sorted; kubectl's map order is random).
pub fn describe_config_map(w: &mut Prefix, cm: &Value, related: &Related) {
    let meta = &cm["metadata"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, "\nData\n====\n");
    for (k, v) in string_map(&cm["data"]) {
        w.write(LEVEL_0, &format!("{k}:\n----\n"));
        w.write(LEVEL_0, &format!("{v}\n"));
        w.write(LEVEL_0, "\n");
    }
    w.write(LEVEL_0, "\nBinaryData\n====\n");
    for (k, v) in string_map(&cm["binaryData"]) {
        w.write(LEVEL_0, &format!("{k}: {} bytes\n", decoded_len(&v)));
    }
    w.write(LEVEL_0, "\n");
    if let Some(events) = &related.events {
        describe_events(w, events);
    }
}

/// kubectl's Secret describer: sizes only, never values.
pub fn describe_secret(w: &mut Prefix, secret: &Value) {
    let meta = &secret["metadata"];
    w.write(LEVEL_0, &format!("Name:\t{}\n", s(&meta["name"])));
    w.write(LEVEL_0, &format!("Namespace:\t{}\n", s(&meta["namespace"])));
    w.labels("Labels", &meta["labels"]);
    w.annotations("Annotations", &meta["annotations"]);
    w.write(LEVEL_0, &format!("\nType:\t{}\n", s(&secret["type"])));
    w.write(LEVEL_0, "\nData\n====\n");
    for (k, v) in string_map(&secret["data"]) {
        w.write(LEVEL_0, &format!("{k}:\t{} bytes\n", decoded_len(&v)));
    }
}

/// The length of base64-encoded data once decoded.
fn decoded_len(b64: &str) -> usize {
    let trimmed = b64.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

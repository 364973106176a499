//! Admission of new pods by the namespace's and the cluster's policy objects, as
//! kube-apiserver's `Priority` and `LimitRanger` admission plugins do it: pure functions of
//! the pod and the objects (the registry reads them and turns a refusal into a 403).
//!
//! * [`admit_priority`] — `spec.priority` (and `preemptionPolicy`) from the pod's
//!   PriorityClass, or the global default class, or 0;
//! * [`admit_limit_ranges`] — the Container defaults of the namespace's LimitRanges filled
//!   into each container's requests and limits, then every min, max and
//!   limit/request ratio checked, per Container and per Pod.

use berth_proto::Quantity;
use serde_json::{json, Map, Value};

/// Sets the pod's priority from its class; the refusal's text otherwise.
pub fn admit_priority(pod: &mut Value, classes: &[Value]) -> Result<(), String> {
    let named = pod["spec"]["priorityClassName"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
    let class = match &named {
        Some(name) => match classes.iter().find(|c| c["metadata"]["name"] == name.as_str()) {
            Some(c) => Some(c),
            None => return Err(format!("no PriorityClass with name {name} was found")),
        },
        None => classes.iter().find(|c| c["globalDefault"] == true),
    };
    let priority = class.and_then(|c| c["value"].as_i64()).unwrap_or(0);
    if let Some(given) = pod["spec"]["priority"].as_i64() {
        if given != priority {
            return Err(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission \
                 controller computed {priority} from the given PriorityClass name"
            ));
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    spec.insert("priority".into(), json!(priority));
    if let Some(class) = class {
        if named.is_none() {
            spec.insert("priorityClassName".into(), class["metadata"]["name"].clone());
        }
        let policy = class["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority");
        spec.entry("preemptionPolicy").or_insert_with(|| json!(policy));
    }
    Ok(())
}

/// The resources of one LimitRange item of `kind` (`Container`, `Pod`).
fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
        .filter(move |item| item["type"] == kind)
}

/// Named quantities (a `ResourceList`).
type Resources = Vec<(String, Quantity)>;

fn quantities(list: &Value) -> Resources {
    list.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), q.as_str().and_then(|t| Quantity::parse(t).ok())?)))
        .collect()
}

/// Fills a container's missing limits from `default` and missing requests from
/// `defaultRequest` (or, without one, the limit), as `LimitRanger`'s defaulting does.
fn default_container(container: &mut Value, item: &Value) {
    let Some(c) = container.as_object_mut() else { return };
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    let Some(resources) = resources.as_object_mut() else { return };
    for (field, source) in [("limits", "default"), ("requests", "defaultRequest"), ("requests", "default")] {
        let defaults = item[source].as_object().cloned().unwrap_or_default();
        if defaults.is_empty() {
            continue;
        }
        let target = resources.entry(field).or_insert_with(|| Value::Object(Map::new()));
        let Some(target) = target.as_object_mut() else { continue };
        for (name, q) in defaults {
            target.entry(name).or_insert(q);
        }
    }
}

/// The checks of one item against one set of requests and limits (a container's, or the
/// pod's sums), as `LimitRanger`'s messages word them.
fn check(
    item: &Value,
    kind: &str,
    requests: &[(String, Quantity)],
    limits: &[(String, Quantity)],
    out: &mut Vec<String>,
) {
    let get = |list: &[(String, Quantity)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, q)| *q);
    for (name, min) in quantities(&item["min"]) {
        match get(requests, &name) {
            None => out.push(format!("minimum {name} usage per {kind} is {min}.  No request is specified")),
            Some(r) if r < min => out.push(format!("minimum {name} usage per {kind} is {min}, but request is {r}")),
            Some(_) => {}
        }
    }
    for (name, max) in quantities(&item["max"]) {
        match get(limits, &name) {
            None => out.push(format!("maximum {name} usage per {kind} is {max}.  No limit is specified")),
            Some(l) if l > max => out.push(format!("maximum {name} usage per {kind} is {max}, but limit is {l}")),
            Some(_) => {}
        }
    }
    for (name, ratio) in quantities(&item["maxLimitRequestRatio"]) {
        if let (Some(l), Some(r)) = (get(limits, &name), get(requests, &name)) {
            let provided = l.nanos() as f64 / r.nanos() as f64;
            if r.nanos() > 0 && provided > ratio.nanos() as f64 / 1e9 {
                out.push(format!(
                    "{name} max limit to request ratio per {kind} is {ratio}, but provided ratio is {provided:.6}"
                ));
            }
        }
    }
}

/// A container's requests and limits.
fn container_lists(container: &Value) -> (Resources, Resources) {
    (quantities(&container["resources"]["requests"]), quantities(&container["resources"]["limits"]))
}

/// Defaults and checks the pod against the namespace's LimitRanges; the refusal's text
/// otherwise (one message, or several in brackets, as an aggregate error prints).
pub fn admit_limit_ranges(pod: &mut Value, ranges: &[Value]) -> Result<(), String> {
    let container_items: Vec<Value> = items(ranges, "Container").cloned().collect();
    for list in ["initContainers", "containers"] {
        // `get_mut`, not indexing: indexing would add the missing list as null.
        let containers = pod.get_mut("spec").and_then(|s| s.get_mut(list)).and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            for item in &container_items {
                default_container(container, item);
            }
        }
    }
    let mut refusals = Vec::new();
    let all_containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .collect();
    for item in &container_items {
        for container in &all_containers {
            let (requests, limits) = container_lists(container);
            check(item, "Container", &requests, &limits, &mut refusals);
        }
    }
    let sums = |requests: bool| {
        let mut total: Resources = Vec::new();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let (r, l) = container_lists(c);
            for (name, q) in if requests { r } else { l } {
                match total.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, sum)) => sum.add(&q),
                    None => total.push((name, q)),
                }
            }
        }
        total
    };
    let pod_items: Vec<&Value> = items(ranges, "Pod").collect();
    if !pod_items.is_empty() {
        let (requests, limits) = (sums(true), sums(false));
        for item in pod_items {
            check(item, "Pod", &requests, &limits, &mut refusals);
        }
    }
    match refusals.len() {
        0 => Ok(()),
        1 => Err(refusals.remove(0)),
        _ => Err(format!("[{}]", refusals.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn a_pod_takes_its_class_priority_or_the_global_default() {
        let classes = vec![
            json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
            json!({"metadata": {"name": "normal"}, "value": 10, "globalDefault": true}),
        ];
        let mut named = json!({"spec": {"priorityClassName": "high"}});
        admit_priority(&mut named, &classes).unwrap();
        assert_eq!(
            (named["spec"]["priority"].as_i64(), named["spec"]["preemptionPolicy"].as_str()),
            (Some(1000), Some("Never"))
        );
        let mut plain = json!({"spec": {}});
        admit_priority(&mut plain, &classes).unwrap();
        assert_eq!(
            (plain["spec"]["priority"].as_i64(), plain["spec"]["priorityClassName"].as_str()),
            (Some(10), Some("normal"))
        );
        let mut none = json!({"spec": {}});
        admit_priority(&mut none, &[]).unwrap();
        assert_eq!(none["spec"]["priority"], 0);
        let mut missing = json!({"spec": {"priorityClassName": "gold"}});
        assert_eq!(admit_priority(&mut missing, &classes).unwrap_err(), "no PriorityClass with name gold was found");
        let mut forged = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        assert!(admit_priority(&mut forged, &classes).unwrap_err().starts_with("the integer value of priority (5)"));
    }

    #[test]
    fn limit_ranges_default_then_bound_containers_and_pods() {
        let ranges = vec![json!({"spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"},
             "max": {"cpu": "1"}, "min": {"memory": "10Mi"}},
            {"type": "Pod", "max": {"cpu": "1500m"}}
        ]}})];
        let mut defaulted = pod(json!([{"name": "a", "resources": {"requests": {"memory": "20Mi"}}}]));
        admit_limit_ranges(&mut defaulted, &ranges).unwrap();
        assert_eq!(
            defaulted["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "100m", "memory": "20Mi"}})
        );
        let mut too_big =
            pod(json!([{"name": "a", "resources": {"limits": {"cpu": "2"}, "requests": {"memory": "20Mi"}}}]));
        assert_eq!(
            admit_limit_ranges(&mut too_big, &ranges).unwrap_err(),
            "[maximum cpu usage per Container is 1, but limit is 2, maximum cpu usage per Pod is 1500m, but limit is 2]"
        );
        let mut no_memory = pod(json!([{"name": "a"}]));
        assert_eq!(
            admit_limit_ranges(&mut no_memory, &ranges).unwrap_err(),
            "minimum memory usage per Container is 10Mi.  No request is specified"
        );
        let mut free = pod(json!([{"name": "a"}]));
        admit_limit_ranges(&mut free, &[]).unwrap();
        assert_eq!(free, pod(json!([{"name": "a"}])));
    }
}

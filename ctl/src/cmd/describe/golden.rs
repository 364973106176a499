//! Golden tests: whole describer outputs for objects captured from a live Berth cluster,
//! compared with what kubectl v1.33 printed for the same objects at the same moment
//! (`testdata/*.json` hold the object and what the describer fetches besides it,
//! `testdata/*.txt` kubectl's output). The one deliberate difference: a Service's
//! endpoints come from its Endpoints object (kubectl reads EndpointSlices, which Berth
//! does not serve, and prints `<none>`).

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;

use super::writer::Clock;
use super::{render, Related};

fn golden(fixture: &str, expected: &str) {
    let doc: Value = serde_json::from_str(fixture).expect("fixture JSON");
    let now = DateTime::parse_from_rfc3339(doc["now"].as_str().expect("now")).expect("now parses").with_timezone(&Utc);
    let clock = Clock { now, zone: Some(FixedOffset::east_opt(0).expect("UTC")) };
    let r = &doc["related"];
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let related = Related {
        events: r.get("events").map(list),
        replica_sets: list(&r["replica_sets"]),
        pods: list(&r["pods"]),
        endpoints: r.get("endpoints").cloned(),
        lease: r.get("lease").cloned().map(Ok),
        quotas: r.get("quotas").map(list),
        limit_ranges: r.get("limit_ranges").map(list),
    };
    let got = render(&doc["object"], &related, clock);
    if got != expected {
        // A line diff is far easier to read than two multi-kilobyte strings.
        for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            if g != e {
                panic!("line {}:\n  got:      {g:?}\n  expected: {e:?}\n\nfull output:\n{got}", n + 1);
            }
        }
        panic!("line counts differ ({} vs {}):\n{got}", got.lines().count(), expected.lines().count());
    }
}

#[test]
fn pod_with_init_container_probes_env_volumes_and_tolerations() {
    golden(include_str!("testdata/pod.json"), include_str!("testdata/pod.txt"));
}

#[test]
fn deployment_with_old_and_new_replica_sets_and_events() {
    golden(include_str!("testdata/deployment.json"), include_str!("testdata/deployment.txt"));
}

#[test]
fn replica_set_with_pod_counts() {
    golden(include_str!("testdata/replicaset.json"), include_str!("testdata/replicaset.txt"));
}

#[test]
fn node_with_lease_pods_and_allocated_resources() {
    golden(include_str!("testdata/node.json"), include_str!("testdata/node.txt"));
}

#[test]
fn service_with_endpoints() {
    golden(include_str!("testdata/service.json"), include_str!("testdata/service.txt"));
}

#[test]
fn generic_describer_prints_the_field_tree() {
    golden(include_str!("testdata/generic.json"), include_str!("testdata/generic.txt"));
}

#[test]
fn config_map_data() {
    golden(include_str!("testdata/configmap.json"), include_str!("testdata/configmap.txt"));
}

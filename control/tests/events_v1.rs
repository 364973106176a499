//! `events.k8s.io/v1` (issue 21): kube-rs's event recorder — which writes the newer API,
//! as client-go's does — records and re-records an event, and the same event is read
//! through both APIs, as kube-apiserver serves one set of objects under both groups.

use berth_control::testing::{self, Server};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Event as Recorded, EventType, Recorder, Reporter};
use kube::Resource;

#[tokio::test(flavor = "multi_thread")]
async fn events_v1_and_core_events_are_one_set_of_objects() {
    let server = Server::start().await;
    let client = server.client();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "settings"}})).unwrap(),
        )
        .await
        .unwrap();
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "berth-test".into(), instance: Some("t1".into()) });
    let event = Recorded {
        type_: EventType::Normal,
        reason: "Reloaded".into(),
        note: Some("settings were reloaded".into()),
        action: "Reload".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    // Again: the recorder patches the event's series, as client-go's does.
    recorder.publish(&event, &reference).await.unwrap();

    let v1 = Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    let recorded = v1.items.iter().find(|e| e.reason.as_deref() == Some("Reloaded")).expect("the event");
    assert_eq!(recorded.note.as_deref(), Some("settings were reloaded"));
    assert_eq!(recorded.regarding.as_ref().unwrap().name.as_deref(), Some("settings"));
    assert_eq!(recorded.reporting_controller.as_deref(), Some("berth-test"));
    assert_eq!(recorded.series.as_ref().map(|s| s.count), Some(2));

    let core = Api::<CoreEvent>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    let same = core.items.iter().find(|e| e.reason.as_deref() == Some("Reloaded")).expect("the same event");
    assert_eq!(same.message.as_deref(), Some("settings were reloaded"));
    assert_eq!(same.involved_object.name.as_deref(), Some("settings"));
    assert_eq!(same.metadata.uid, recorded.metadata.uid);

    // kubectl reads both.
    let (ok, out, err) = testing::kubectl(&server.kubeconfig_yaml(), &["get", "events"], None).await;
    assert!(ok && out.contains("Reloaded") && out.contains("settings were reloaded"), "{out}{err}");
    let (ok, out, err) =
        testing::kubectl(&server.kubeconfig_yaml(), &["get", "events.events.k8s.io", "-o", "yaml"], None).await;
    assert!(
        ok && out.contains("note: settings were reloaded") && out.contains("apiVersion: events.k8s.io/v1"),
        "{out}{err}"
    );
}

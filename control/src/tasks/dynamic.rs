//! API access to any served kind by its row in the resource table, for the tasks that
//! handle every kind alike (namespace deletion, the garbage collector): a `kube` dynamic
//! API, so those writes go through the API like any other client's.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;

use super::sync_error::is_status;
use crate::resource::table::ResourceInfo;

/// The `kube` description of a served resource.
pub fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

/// An API of `info`'s objects: those of `namespace` for a namespaced kind, or the
/// cluster-scoped ones.
pub fn api(client: &Client, info: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(info);
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// The CustomResourceDefinitions as the API serves them now (JSON).
pub async fn definitions(client: &Client) -> Result<Vec<serde_json::Value>, kube::Error> {
    let crds = crate::resource::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("served");
    let list = api(client, crds, None).list(&Default::default()).await?;
    Ok(list.items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect())
}

/// The storage version of every custom resource the API serves now: what a task that
/// handles every kind alike must cover besides the built-in table.
pub async fn custom_resources(client: &Client) -> Result<Vec<&'static ResourceInfo>, kube::Error> {
    let crds = definitions(client).await?;
    Ok(crds.iter().filter_map(|crd| crate::resource::custom::resources_of(crd).first().copied()).collect())
}

/// Every served version of every custom resource (empty when the CRDs cannot be listed).
pub async fn served_custom_resources(client: &Client) -> Vec<&'static ResourceInfo> {
    let crds = definitions(client).await.unwrap_or_default();
    crds.iter().flat_map(|crd| crate::resource::custom::resources_of(crd)).collect()
}

/// Whether an API error means someone else got there first (the object changed since
/// it was read, or is gone): the next pass decides again.
pub fn lost_a_race(e: &kube::Error) -> bool {
    is_status(e, 404) || is_status(e, 409)
}

//! Raw JSON reads shared by `describe`, `rollout` and `logs`: one object, or every page of
//! a list with label and field selectors, through the session (so an unreachable server
//! fails over to the next). List items get their `apiVersion` and `kind` filled in, as
//! kubectl's dynamic client shows them.

use serde_json::Value;

use crate::error::Result;
use crate::resources::ResourceInfo;
use crate::session::Session;

/// GETs `path` (with any query string already encoded) as JSON.
pub async fn get(session: &mut Session, path: &str) -> Result<Value> {
    tracing::debug!(path, "GET");
    session
        .call(|client| {
            let path = path.to_string();
            async move {
                let req = http::Request::get(path).body(Vec::new()).expect("a GET request builds");
                client.request::<Value>(req).await
            }
        })
        .await
}

/// Selectors of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// Every item of `info`'s collection (in `namespace`, or all namespaces / cluster-wide
/// when None), following `continue` tokens.
pub async fn list(
    session: &mut Session,
    info: &ResourceInfo,
    namespace: Option<&str>,
    opts: &ListOptions,
) -> Result<Vec<Value>> {
    let base = info.url_path(namespace, None);
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(l) = opts.label_selector.as_deref().filter(|l| !l.is_empty()) {
            query.append_pair("labelSelector", l);
        }
        if let Some(f) = opts.field_selector.as_deref().filter(|f| !f.is_empty()) {
            query.append_pair("fieldSelector", f);
        }
        query.append_pair("limit", "500");
        if let Some(t) = &token {
            query.append_pair("continue", t);
        }
        let page = get(session, &format!("{base}?{}", query.finish())).await?;
        for mut item in page["items"].as_array().cloned().unwrap_or_default() {
            if let Some(map) = item.as_object_mut() {
                map.entry("apiVersion").or_insert_with(|| Value::String(info.api_version()));
                map.entry("kind").or_insert_with(|| Value::String(info.kind.clone()));
            }
            items.push(item);
        }
        token = page["metadata"]["continue"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// The object's namespace and name.
pub fn ns_name(object: &Value) -> (Option<&str>, &str) {
    let meta = &object["metadata"];
    (meta["namespace"].as_str().filter(|n| !n.is_empty()), meta["name"].as_str().unwrap_or(""))
}

//! `berthctl run` (a pod, as kubectl generates it) and `berthctl expose` (a Service for a
//! deployment, replica set, pod or service, with kubectl's selector and port introspection).
//! The object generators are pure and golden-tested; the commands only fetch and POST.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cmd::apply::{create_generated, CreateCommon};
use crate::cmd::objects::{self, SelectFlags, Selection};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Name of the pod.
    pub name: String,
    /// The image for the container to run.
    #[arg(long, required = true)]
    pub image: String,
    /// The port that this container exposes.
    #[arg(long)]
    pub port: Option<String>,
    /// Comma separated labels to apply to the pod. Will override the default `run=NAME`.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Annotations to apply to the pod.
    #[arg(long = "annotations")]
    pub annotations: Vec<String>,
    /// Environment variables to set in the container (NAME=VALUE).
    #[arg(long)]
    pub env: Vec<String>,
    /// The restart policy for this Pod: Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// The image pull policy for the container.
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// Use the extra arguments as the container's `command` instead of its `args`.
    #[arg(long)]
    pub command: bool,
    /// An inline JSON override for the generated object (merged as a JSON merge patch).
    #[arg(long)]
    pub overrides: Option<String>,
    #[command(flatten)]
    pub common: CreateCommon,
    /// Arguments (or, with --command, the command) for the container, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Runs `run`.
pub async fn run_run(s: &mut Session, args: RunArgs, out: &mut Out) -> Result<()> {
    let mut pod = pod_object(&args)?;
    if let Some(text) = &args.overrides {
        let patch: Value =
            serde_json::from_str(text).map_err(|e| CtlError::usage(format!("invalid --overrides: {e}")))?;
        merge(&mut pod, &patch);
    }
    create_generated(s, pod, &args.common, out).await
}

/// RFC 7386 merge of `patch` into `doc` (`--overrides`).
fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

/// `a=b,c=d` → map; kubectl's error on a malformed pair.
pub fn parse_pairs(text: &str, what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CtlError::usage(format!("invalid {what} format: {pair}")));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// kubectl's `run` pod: label `run=NAME` unless --labels, one container named NAME.
pub fn pod_object(args: &RunArgs) -> Result<Value> {
    if !["Always", "OnFailure", "Never"].contains(&args.restart.as_str()) {
        return Err(CtlError::usage(format!("invalid restart policy: {}", args.restart)));
    }
    let labels = match &args.labels {
        Some(l) => parse_pairs(l, "label")?,
        None => BTreeMap::from([("run".to_string(), args.name.clone())]),
    };
    let mut container = json!({"image": args.image, "name": args.name, "resources": {}});
    if !args.args.is_empty() {
        container[if args.command { "command" } else { "args" }] = json!(args.args);
    }
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => Ok(json!({"name": k, "value": v})),
                None => Err(CtlError::usage(format!("invalid env: {e}"))),
            })
            .collect::<Result<_>>()?;
        container["env"] = json!(env);
    }
    if let Some(port) = &args.port {
        let n: i64 = port.parse().map_err(|_| CtlError::usage(format!("invalid port: {port}")))?;
        container["ports"] = json!([{"containerPort": n}]);
    }
    if let Some(policy) = &args.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    let mut metadata = json!({"creationTimestamp": null, "labels": labels, "name": args.name});
    if !args.annotations.is_empty() {
        let mut annotations = BTreeMap::new();
        for a in &args.annotations {
            annotations.extend(parse_pairs(a, "annotation")?);
        }
        metadata["annotations"] = json!(annotations);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [container], "dnsPolicy": "ClusterFirst", "restartPolicy": args.restart},
        "status": {},
    }))
}

/// Flags of `expose`.
#[derive(Debug, clap::Args)]
pub struct ExposeArgs {
    /// TYPE NAME or TYPE/NAME of a deployment, replica set, pod or service.
    pub resource: Vec<String>,
    /// Filename of the object to expose.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// The port that the service should serve on (taken from the object when omitted).
    #[arg(long)]
    pub port: Option<String>,
    /// Name or number for the port on the container that the service should direct traffic to.
    #[arg(long)]
    pub target_port: Option<String>,
    /// The name for the newly created object.
    #[arg(long)]
    pub name: Option<String>,
    /// Type for this service: ClusterIP, NodePort, LoadBalancer, or ExternalName.
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// The network protocol for the service to be created.
    #[arg(long)]
    pub protocol: Option<String>,
    /// A label selector to use for this service (only equality-based selectors).
    #[arg(long)]
    pub selector: Option<String>,
    /// Labels to apply to the service created by this call.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Additional external IP address to accept for the service.
    #[arg(long)]
    pub external_ip: Option<String>,
    /// ClusterIP to be assigned to the service ("None" for a headless service).
    #[arg(long)]
    pub cluster_ip: Option<String>,
    /// If non-empty, set the session affinity for the service to this; legal values: 'None', 'ClientIP'.
    #[arg(long)]
    pub session_affinity: Option<String>,
    #[command(flatten)]
    pub common: CreateCommon,
}

/// Runs `expose`.
pub async fn run_expose(s: &mut Session, args: ExposeArgs, out: &mut Out) -> Result<()> {
    let flags = SelectFlags { filenames: args.filenames.clone(), ..Default::default() };
    let sel = Selection { args: args.resource.clone(), flags };
    let found = objects::select(s, &sel, true).await?;
    objects::finish(found.errors)?;
    for obj in found.objects {
        if !["Deployment", "ReplicaSet", "ReplicationController", "Pod", "Service"].contains(&obj.info.kind.as_str()) {
            return Err(CtlError::usage(format!("cannot expose a {}", obj.info.kind)));
        }
        let service = service_object(&obj.info.kind, &obj.object, &args)?;
        let mut common = args.common.clone();
        // kubectl reports "exposed"; create_generated says "created", so print here instead.
        let format = objects::output_format(common.output.as_deref())?;
        if format.is_none() {
            let dry = common.dry_run.get()?;
            let mut sink = Vec::new();
            common.output = Some("name".into());
            create_generated(s, service, &common, &mut sink).await?;
            let name = String::from_utf8_lossy(&sink).trim().to_string();
            crate::emit(out, &format!("{name} exposed{}\n", dry.suffix()))?;
        } else {
            create_generated(s, service, &common, out).await?;
        }
    }
    Ok(())
}

/// kubectl's Service for `expose`: selector and labels from the object, ports from --port or
/// from the object (container ports of the pod template, or the service's ports).
pub fn service_object(kind: &str, object: &Value, args: &ExposeArgs) -> Result<Value> {
    let selector = match &args.selector {
        Some(s) => parse_pairs(s, "selector")?,
        None => selector_of(kind, object).map_err(|e| {
            CtlError::usage(format!("couldn't retrieve selectors via --selector flag or introspection: {e}"))
        })?,
    };
    let labels = match &args.labels {
        Some(l) => parse_pairs(l, "label")?,
        None => string_map(&object["metadata"]["labels"]),
    };
    let (ports, protocols): (Vec<String>, BTreeMap<String, String>) = match &args.port {
        Some(p) => (p.split(',').map(|s| s.trim().to_string()).collect(), BTreeMap::new()),
        None => {
            let introspected = ports_of(kind, object);
            if introspected.is_empty() {
                return Err(CtlError::usage("couldn't find port via --port flag or introspection"));
            }
            let protocols = introspected.iter().cloned().collect();
            (introspected.into_iter().map(|(p, _)| p).collect(), protocols)
        }
    };
    let mut service_ports = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let number: i64 = port.parse().map_err(|_| CtlError::usage(format!("invalid port: {port}")))?;
        let protocol = args.protocol.clone().or_else(|| protocols.get(port).cloned()).unwrap_or_else(|| "TCP".into());
        let target = match &args.target_port {
            Some(t) => t.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(t)),
            None => json!(number),
        };
        let mut p = json!({"port": number, "protocol": protocol, "targetPort": target});
        if ports.len() > 1 {
            p["name"] = json!(format!("port-{}", i + 1));
        }
        service_ports.push(p);
    }
    let name = args
        .name
        .clone()
        .or_else(|| object["metadata"]["name"].as_str().map(str::to_string))
        .ok_or_else(|| CtlError::usage("the name of the service is required"))?;
    let mut metadata = json!({"creationTimestamp": null, "name": name});
    if !labels.is_empty() {
        metadata["labels"] = json!(labels);
    }
    let mut spec = json!({"ports": service_ports, "selector": selector});
    if let Some(t) = &args.service_type {
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&t.as_str()) {
            return Err(CtlError::usage(format!("invalid service type: {t}")));
        }
        spec["type"] = json!(t);
    }
    if let Some(ip) = &args.external_ip {
        spec["externalIPs"] = json!([ip]);
    }
    if let Some(ip) = &args.cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    if let Some(a) = &args.session_affinity {
        spec["sessionAffinity"] = json!(a);
    }
    Ok(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec, "status": {"loadBalancer": {}}}),
    )
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The map-based selector of an object, as kubectl's `MapBasedSelectorForObject` finds it.
fn selector_of(kind: &str, object: &Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let (selector, what) = match kind {
        "Pod" => (string_map(&object["metadata"]["labels"]), "pod"),
        "Service" | "ReplicationController" => (string_map(&object["spec"]["selector"]), kind),
        _ => {
            let sel = &object["spec"]["selector"];
            if sel["matchExpressions"].as_array().is_some_and(|e| !e.is_empty()) {
                return Err(format!("couldn't convert expressions - \"{}\" to map-based selector format", sel));
            }
            (string_map(&sel["matchLabels"]), kind)
        }
    };
    if selector.is_empty() {
        return Err(format!("the {} has no labels or selectors and cannot be exposed", what.to_ascii_lowercase()));
    }
    Ok(selector)
}

/// Ports kubectl introspects, with their protocols: every container port of the pod (or pod
/// template), or every port of a service.
fn ports_of(kind: &str, object: &Value) -> Vec<(String, String)> {
    let protocol = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_string();
    if kind == "Service" {
        return object["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["port"].as_i64()?.to_string(), protocol(p))))
            .collect();
    }
    let spec = if kind == "Pod" { &object["spec"] } else { &object["spec"]["template"]["spec"] };
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| Some((p["containerPort"].as_i64()?.to_string(), protocol(&p))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct R {
        #[command(flatten)]
        run: RunArgs,
    }

    #[derive(Parser)]
    struct E {
        #[command(flatten)]
        expose: ExposeArgs,
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        R::try_parse_from(std::iter::once("run").chain(argv.iter().copied())).unwrap().run
    }

    fn expose_args(argv: &[&str]) -> ExposeArgs {
        E::try_parse_from(std::iter::once("expose").chain(argv.iter().copied())).unwrap().expose
    }

    #[test]
    fn run_pod_matches_kubectl() {
        // kubectl run nginx --image=nginx --port=80 --labels=a=b,c=d --env=X=1 --dry-run=client -o yaml
        let pod =
            pod_object(&run_args(&["nginx", "--image=nginx", "--port=80", "--labels=a=b,c=d", "--env=X=1"])).unwrap();
        assert_eq!(
            crate::output::to_yaml(&pod),
            "apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    a: b
    c: d
  name: nginx
spec:
  containers:
  - env:
    - name: X
      value: '1'
    image: nginx
    name: nginx
    ports:
    - containerPort: 80
    resources: {}
  dnsPolicy: ClusterFirst
  restartPolicy: Always
status: {}
"
        );
        let pod = pod_object(&run_args(&[
            "bb",
            "--image=busybox",
            "--restart=Never",
            "--command",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]))
        .unwrap();
        assert_eq!(pod["metadata"]["labels"], json!({"run": "bb"}));
        assert_eq!(pod["spec"]["containers"][0]["command"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        let pod = pod_object(&run_args(&["bb2", "--image=busybox", "--", "echo", "hi"])).unwrap();
        assert_eq!(pod["spec"]["containers"][0]["args"], json!(["echo", "hi"]));
        assert!(pod_object(&run_args(&["x", "--image=i", "--restart=Sometimes"])).is_err());
    }

    #[test]
    fn overrides_merge() {
        let mut pod = pod_object(&run_args(&["p", "--image=i"])).unwrap();
        merge(&mut pod, &json!({"spec": {"nodeName": "n1", "dnsPolicy": null}}));
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert!(pod["spec"].get("dnsPolicy").is_none());
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
    }

    fn deployment() -> Value {
        json!({"metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
               "spec": {"selector": {"matchLabels": {"app": "nginx"}},
                        "template": {"spec": {"containers": [{"name": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}]}}}})
    }

    #[test]
    fn expose_matches_kubectl() {
        // kubectl expose deployment nginx-deployment --port=80 --target-port=8080 --dry-run=client -o yaml
        let svc =
            service_object("Deployment", &deployment(), &expose_args(&["--port=80", "--target-port=8080"])).unwrap();
        assert_eq!(
            crate::output::to_yaml(&svc),
            "apiVersion: v1
kind: Service
metadata:
  creationTimestamp: null
  labels:
    app: nginx
  name: nginx-deployment
spec:
  ports:
  - port: 80
    protocol: TCP
    targetPort: 8080
  selector:
    app: nginx
status:
  loadBalancer: {}
"
        );
        // Ports by introspection: every container port, named port-N, protocols kept.
        let svc = service_object("Deployment", &deployment(), &expose_args(&["--name=x", "--type=NodePort"])).unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([
                {"name": "port-1", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "port-2", "port": 53, "protocol": "UDP", "targetPort": 53}
            ])
        );
        assert_eq!(svc["metadata"]["name"], "x");
        assert_eq!(svc["spec"]["type"], "NodePort");
        // A pod without ports.
        let pod =
            json!({"metadata": {"name": "web", "labels": {"run": "web"}}, "spec": {"containers": [{"name": "web"}]}});
        assert_eq!(
            service_object("Pod", &pod, &expose_args(&[])).unwrap_err().to_string(),
            "error: couldn't find port via --port flag or introspection"
        );
        let svc = service_object("Pod", &pod, &expose_args(&["--port=80"])).unwrap();
        assert_eq!(svc["spec"]["selector"], json!({"run": "web"}));
        let mut expr = deployment();
        expr["spec"]["selector"]["matchExpressions"] = json!([{"key": "a", "operator": "Exists"}]);
        assert!(service_object("Deployment", &expr, &expose_args(&["--port=80"]))
            .unwrap_err()
            .to_string()
            .starts_with(
                "error: couldn't retrieve selectors via --selector flag or introspection: couldn't convert expressions"
            ));
    }
}

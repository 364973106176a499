//! Well-known label, taint and annotation keys, spelled once. Kubernetes defines them
//! (`k8s.io/api/core/v1/well_known_labels.go`, `well_known_taints.go`, the workload
//! controllers and kubectl); every Berth crate that reads or writes one uses these constants,
//! so a typo cannot make the server and a client disagree.

// ---- Node labels -------------------------------------------------------------------------

/// `kubernetes.io/hostname`: the node's name, set by the agent; the usual topology key.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `kubernetes.io/os`: `linux`, as Go's `GOOS` spells it.
pub const LABEL_OS: &str = "kubernetes.io/os";
/// `kubernetes.io/arch`: the node's architecture, as Go's `GOARCH` spells it.
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// The prefix of `node-role.kubernetes.io/<role>` labels, which give a node's ROLES column.
pub const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
/// The legacy `kubernetes.io/role` label kubectl still reads for ROLES.
pub const LABEL_ROLE: &str = "kubernetes.io/role";
/// The deprecated `beta.kubernetes.io/os` twin of [`LABEL_OS`], which kubelets still set.
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
/// The deprecated `beta.kubernetes.io/arch` twin of [`LABEL_ARCH`], which kubelets still set.
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";

// ---- Workload labels ---------------------------------------------------------------------

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label naming the ControllerRevision a StatefulSet's or DaemonSet's pod came from.
pub const LABEL_CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The label naming a StatefulSet pod (for per-pod Services).
pub const LABEL_STATEFULSET_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal.
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// The Job's UID on its pods, the generated selector of a Job.
pub const LABEL_JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The Job's name on its pods.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Annotation and label naming an Indexed Job pod's completion index.
pub const JOB_COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The label the endpoints controllers put on a headless Service's EndpointSlices.
pub const LABEL_SERVICE_HEADLESS: &str = "service.kubernetes.io/headless";

// ---- Node taints -------------------------------------------------------------------------

/// The node's Ready condition is False.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node's Ready condition is Unknown (it stopped reporting).
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The node is cordoned (`spec.unschedulable`).
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

// ---- Annotations -------------------------------------------------------------------------

/// The configuration `kubectl apply` last applied (its three-way merge base).
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The container `kubectl logs`/`exec` pick when a pod has several.
pub const ANNOTATION_DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// `kubectl rollout history`'s CHANGE-CAUSE column.
pub const ANNOTATION_CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// A ReplicaSet's (or Deployment's) revision number.
pub const ANNOTATION_DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet had before a rollback re-used it.
pub const ANNOTATION_DEPLOYMENT_REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment controller's replica annotations on ReplicaSets.
pub const ANNOTATION_DEPLOYMENT_DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const ANNOTATION_DEPLOYMENT_MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The time a CronJob scheduled the Job it created.
pub const ANNOTATION_CRONJOB_SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// The time `kubectl rollout restart` asked for a new rollout (on the pod template).
pub const ANNOTATION_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Marks a mirror pod (the API copy of a kubelet's static pod), which `kubectl drain` skips.
pub const ANNOTATION_MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// Names the ServiceAccount a `kubernetes.io/service-account-token` Secret belongs to.
pub const ANNOTATION_SERVICE_ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
/// The deprecated ServiceAccount annotation that limits which Secrets its pods may mount.
pub const ANNOTATION_ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";

// ---- Other labels ------------------------------------------------------------------------

/// Every Namespace's own name, set by the API server (so selectors can pick namespaces).
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";
/// `kubernetes.io/cluster-service=true` marks the add-on Services `kubectl cluster-info`
/// lists.
pub const LABEL_CLUSTER_SERVICE: &str = "kubernetes.io/cluster-service";
/// The display name `kubectl cluster-info` shows for such a Service.
pub const LABEL_CLUSTER_SERVICE_NAME: &str = "kubernetes.io/name";
/// The prefix reserved for Kubernetes' own keys (`kubernetes.io/`, also under subdomains).
pub const KUBERNETES_IO_PREFIX: &str = "kubernetes.io/";

// ---- Secret types ------------------------------------------------------------------------

/// A Secret of arbitrary keys; the default `type`.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";
/// A ServiceAccount's API token.
pub const SECRET_TYPE_SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
/// A legacy `~/.dockercfg` (key `.dockercfg`).
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// A `~/.docker/config.json` (key `.dockerconfigjson`).
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Basic authentication (`username`, `password`).
pub const SECRET_TYPE_BASIC_AUTH: &str = "kubernetes.io/basic-auth";
/// SSH authentication (`ssh-privatekey`).
pub const SECRET_TYPE_SSH_AUTH: &str = "kubernetes.io/ssh-auth";
/// A TLS certificate and key (`tls.crt`, `tls.key`).
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

// ---- Well-known Service addresses ---------------------------------------------------------

/// The `kube-dns` Service's ClusterIP (kube-system), the tenth address of the default
/// service range as kubeadm reserves it: what local clusters pass as kubelets'
/// `--cluster-dns`.
pub const KUBE_DNS_CLUSTER_IP: &str = "10.96.0.10";

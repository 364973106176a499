//! The registry: create, read, update and delete of API objects on the replicated store,
//! with Kubernetes' object semantics.
//!
//! What happens to a write, in order (as kube-apiserver's generic registry):
//! 1. metadata: namespace defaulting and checks, `generateName`, uid, timestamps,
//!    generation (bumped when anything outside metadata and status changes);
//! 2. subresource rules: the main resource cannot change `status`, `status` can change
//!    nothing else;
//! 3. a new pod's admission: its ServiceAccount, then its priority and the namespace's
//!    LimitRanges ([`pod_admission`]) → `403 Forbidden` with the plugin's reason;
//! 4. defaulting and the typed check (`resource::typed`), unknown fields per `fieldValidation`;
//! 5. validation (`resource::validate`) → `422 Invalid` with field paths;
//! 6. one guarded store transaction ([`storage::guarded`]): create if absent, update if
//!    `mod_revision` is unchanged (else `409 Conflict`); every write is recorded in
//!    `metadata.managedFields` ([`managed_fields`]) for server-side apply's conflicts.
//!
//! Deletion is graceful where Kubernetes makes it so (pods bound to a node wait for the
//! agent, objects with finalizers wait for them, namespaces wait for their contents).

pub mod fence;
pub mod managed_fields;
pub mod object;
pub mod pod_admission;
pub mod quota;
pub mod services;
pub mod storage;

use berth_store::Store;
use serde_json::{json, Value};

use crate::resource::strategy::Deletion;
use crate::resource::{self, typed, validate, ApiError, Cause, ResourceInfo, Subject};
use object::{meta_mut, timestamp};
use storage::{Guard, Stored, Write};

/// Objects above this size are refused (etcd's default request limit).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;
/// Read-modify-write attempts a contended write always gets.
const MAX_ATTEMPTS: usize = 8;
/// After [`MAX_ATTEMPTS`], a write that pins no resourceVersion keeps retrying until this
/// much time has passed before it gives up with 409. kube-apiserver's GuaranteedUpdate
/// retries such writes (a merge patch, a delete) until they apply; the Jepsen `deploy`
/// workload saw 8 attempts run out when several clients patch one Deployment while its
/// controller writes its status.
const CONTENDED_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a read-modify-write loop that started at `started` may make attempt `attempt`.
fn may_retry(attempt: usize, started: std::time::Instant) -> bool {
    attempt < MAX_ATTEMPTS || started.elapsed() < CONTENDED_LIMIT
}
/// Create attempts: more than [`MAX_ATTEMPTS`] because creates in a namespace with a quota
/// all guard on the quota's revision, so N concurrent creates may need N rounds.
const MAX_CREATE_ATTEMPTS: usize = 64;

/// `fieldValidation`: what unknown fields in a body do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Options every write takes (query parameters of the request).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    /// System writes (pod binding) that change fields clients may not: validated as a
    /// create, not against the update rules.
    pub skip_update_rules: bool,
    /// A write of fields only the server sets, built by the server from an object already
    /// admitted (pod binding): stored without defaulting, normalising or validating it
    /// again, as kube-apiserver's binding writes the pod straight to storage.
    pub trusted: bool,
}

/// A written object and the warnings for the `Warning` header.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// False when the write changed nothing (no-op updates keep their resourceVersion).
    pub changed: bool,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything except `status` (for resources with a status subresource).
    Main,
    /// Only `status`.
    Status,
    /// Spec and status together (system writes such as binding).
    Whole,
}

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    pub propagation: Propagation,
}

/// What happens to an object's dependents (objects naming it in `ownerReferences`) when it
/// is deleted. The garbage collector (`tasks::gc`) carries it out; here it only decides
/// which finalizer the owner keeps while that happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; dependents are deleted after it.
    #[default]
    Background,
    /// The owner stays (`foregroundDeletion` finalizer) until its blocking dependents are gone.
    Foreground,
    /// The owner stays (`orphan` finalizer) until its dependents no longer name it.
    Orphan,
}

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

impl Propagation {
    pub fn parse(policy: &str) -> Option<Propagation> {
        match policy {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }

    /// The finalizer that holds the owner while its dependents are handled.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
        }
    }
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Gone from the store; the object as it was, at the deletion's revision.
    Now(Value),
    /// Marked for deletion (graceful pod, finalizers, namespace contents); still readable.
    Pending(Value),
}

/// The API server's storage front end. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    storage: storage::Storage,
    /// Whether new pods get a service-account token volume (the server signs tokens).
    mount_service_account_tokens: bool,
}

fn subject(info: &ResourceInfo, name: &str) -> Subject {
    Subject { group: info.group.into(), kind: info.plural.into(), name: name.into() }
}

pub fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound(subject(info, name))
}

fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::Conflict {
        subject: subject(info, name),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        qualified_kind: info.qualified_kind(),
        name: name.into(),
        group: info.group.into(),
        kind: info.kind.into(),
        causes,
    }
}

fn field_invalid(info: &ResourceInfo, name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    invalid(
        info,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("{field}: Invalid value: {value:?}: {detail}"),
            field: field.into(),
        }],
    )
}

fn causes(errors: Vec<validate::FieldError>) -> Vec<Cause> {
    errors.iter().map(|e| Cause { reason: e.reason().into(), message: e.message(), field: e.field.clone() }).collect()
}

/// Everything of an object except metadata and status: a change here bumps generation.
fn spec_part(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    copy
}

/// Equal for the purpose of "did this update change anything" (kube-apiserver skips such
/// writes). managedFields count, but not their timestamps: an apply that only refreshes
/// its entry's time is a no-op, one that changes who owns what is not.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
        }
        c
    };
    strip(a) == strip(b)
}

/// A write's body may repeat the object's identity but not change it (kube-apiserver:
/// name and namespace mismatches are 400s, a changed uid is an immutable field).
fn check_identity(
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    old: &Value,
    desired: &Value,
) -> Result<(), ApiError> {
    if let Some(body_name) = object::name(desired).filter(|n| !n.is_empty() && *n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (true, Some(body_ns)) = (info.namespaced, object::namespace(desired)) {
        if !body_ns.is_empty() && body_ns != namespace.unwrap_or("default") {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    let old_uid = object::meta_str(old, "uid").unwrap_or_default();
    if let Some(uid) = object::meta_str(desired, "uid").filter(|u| !u.is_empty() && *u != old_uid) {
        return Err(field_invalid(info, name, "metadata.uid", uid, "field is immutable"));
    }
    Ok(())
}

impl Registry {
    pub fn new(storage: storage::Storage) -> Registry {
        Registry { storage, mount_service_account_tokens: false }
    }

    /// New pods get the service-account token volume from now on (see
    /// [`crate::serviceaccount::admission`]).
    pub fn mount_service_account_tokens(&mut self) {
        self.mount_service_account_tokens = true;
    }

    /// The ServiceAccount admission of a new pod: its account and, unless either opts out,
    /// the token volume.
    async fn admit_service_account(&self, namespace: &str, pod: &mut Value) {
        use crate::serviceaccount::admission;
        let account = admission::account_of(pod).to_string();
        let sa_info = resource::find("", "v1", "serviceaccounts").expect("served");
        let automount = match self.get(sa_info, Some(namespace), &account, false).await {
            Ok(sa) => sa.get("automountServiceAccountToken").and_then(Value::as_bool),
            Err(_) => None,
        };
        admission::admit_pod(pod, automount, &admission::random_suffix());
    }

    /// The Priority and LimitRanger admission of a new pod (`pod_admission`): the cluster's
    /// PriorityClasses and the namespace's LimitRanges, read from this member.
    async fn admit_pod_policies(&self, namespace: &str, name: &str, pod: &mut Value) -> Result<(), ApiError> {
        let read = |group: &'static str, plural: &'static str, ns: Option<&str>| {
            let info = resource::find(group, "v1", plural).expect("served");
            let prefix = storage::prefix(info, ns);
            async move { self.storage.scan_few_serializable(&prefix).await }
        };
        let forbidden = |reason: String| ApiError::Forbidden(format!("pods \"{name}\" is forbidden: {reason}"));
        let classes: Vec<Value> =
            read("scheduling.k8s.io", "priorityclasses", None).await?.items.into_iter().map(|s| s.object).collect();
        pod_admission::admit_priority(pod, &classes).map_err(forbidden)?;
        let ranges: Vec<Value> =
            read("", "limitranges", Some(namespace)).await?.items.into_iter().map(|s| s.object).collect();
        pod_admission::admit_limit_ranges(pod, &ranges).map_err(forbidden)
    }

    pub fn store(&self) -> &Store {
        self.storage.store()
    }

    pub fn storage(&self) -> &storage::Storage {
        &self.storage
    }

    /// GET one object. `consistent`: linearizable (no `resourceVersion` given).
    #[tracing::instrument(level = "debug", skip(self, info), fields(resource = info.plural))]
    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        consistent: bool,
    ) -> Result<Value, ApiError> {
        let key = storage::object_key(info, namespace, name);
        match self.storage.get(&key, consistent).await? {
            Some(s) => Ok(s.object),
            None => Err(not_found(info, name)),
        }
    }

    async fn get_stored(&self, info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<Stored, ApiError> {
        let key = storage::object_key(info, namespace, name);
        self.storage.get(&key, true).await?.ok_or_else(|| not_found(info, name))
    }

    /// Checks `apiVersion`/`kind` of a body (filling them when absent) and that it is an object.
    fn check_type(info: &ResourceInfo, body: &mut Value) -> Result<(), ApiError> {
        let Some(map) = body.as_object_mut() else {
            return Err(ApiError::BadRequest("the body of the request was not a JSON object".into()));
        };
        // A non-string apiVersion or kind must not read as absent (and be filled in).
        for field in ["apiVersion", "kind"] {
            let go_type = match map.get(field) {
                Some(Value::Number(_)) => "number",
                Some(Value::Bool(_)) => "bool",
                Some(Value::Array(_)) => "array",
                Some(Value::Object(_)) => "object",
                _ => continue,
            };
            return Err(ApiError::BadRequest(format!(
                "couldn't get version/kind; json parse error: json: cannot unmarshal {go_type} into Go struct field .{field} of type string"
            )));
        }
        let want = info.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("apiVersion".into(), json!(want));
            }
            Some(v) if v == want => {}
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({v}) does not match the expected API version ({want})"
                )))
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("kind".into(), json!(info.kind));
            }
            Some(k) if k == info.kind => {}
            Some(k) => {
                return Err(ApiError::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )))
            }
        }
        if let Some(m) = map.get("metadata") {
            if !m.is_object() && !m.is_null() {
                return Err(ApiError::BadRequest("metadata: expected an object".into()));
            }
            // Decoding errors are 400s, before any validation can call them missing.
            for field in ["name", "namespace", "generateName", "resourceVersion", "uid"] {
                if m.get(field).is_some_and(|v| !v.is_string() && !v.is_null()) {
                    return Err(ApiError::BadRequest(format!(
                        "{} in version \"{}\" cannot be handled as a {}: metadata.{field}: expected a string",
                        info.kind, info.version, info.kind
                    )));
                }
            }
        }
        Ok(())
    }

    /// Defaulting, the typed check, and validation; returns the normalised object.
    fn admit(
        info: &ResourceInfo,
        name: &str,
        mut obj: Value,
        old: Option<&Value>,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        validate::default_object(info, &mut obj);
        let normalized = typed::normalize(info, &obj).map_err(|e| {
            ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        })?;
        if !normalized.unknown_fields.is_empty() {
            match opts.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> =
                        normalized.unknown_fields.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                    return Err(ApiError::BadRequest(format!("strict decoding error: {}", list.join(", "))));
                }
                FieldValidation::Warn => {
                    warnings.extend(normalized.unknown_fields.iter().map(|f| format!("unknown field \"{f}\"")))
                }
                FieldValidation::Ignore => {}
            }
        }
        let obj = normalized.object;
        let errors = match old {
            None => validate::validate_create(info, &obj),
            Some(_) if opts.skip_update_rules => validate::validate_create(info, &obj),
            Some(old) => validate::validate_update(info, old, &obj),
        };
        if !errors.is_empty() {
            return Err(invalid(info, name, causes(errors)));
        }
        if storage::encode(&obj).len() > MAX_OBJECT_BYTES {
            return Err(ApiError::TooLarge(format!("limit is {MAX_OBJECT_BYTES}")));
        }
        Ok(obj)
    }

    /// The namespace of a request for a namespaced resource must exist and not be
    /// terminating (checked again atomically by the write's guard).
    async fn check_namespace(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Result<(), ApiError> {
        let ns_info = resource::find("", "v1", "namespaces").expect("namespaces are served");
        let key = storage::object_key(ns_info, None, namespace);
        // This member's copy first (cheap, and right but for the newest writes); a miss is
        // confirmed by a linearizable read before it is answered 404, as kube-apiserver's
        // NamespaceLifecycle admission falls back to a live lookup: a namespace created
        // through another server a moment ago may not have reached this member yet.
        let found = match self.storage.get(&key, false).await? {
            Some(ns) => Some(ns),
            None => self.storage.get(&key, true).await?,
        };
        match found {
            None => Err(not_found(ns_info, namespace)),
            Some(ns) if object::is_deleting(&ns.object) => Err(ApiError::Forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                info.qualified()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// POST: creates `body` in `namespace`.
    #[tracing::instrument(level = "debug", skip(self, info, body, opts), fields(resource = info.plural))]
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if info.custom.is_some_and(|c| c.terminating) {
            return Err(ApiError::MethodNotAllowed(
                "create not allowed while custom resource definition is terminating".into(),
            ));
        }
        Self::check_type(info, &mut body)?;
        let namespace = if info.namespaced {
            let url_ns = namespace.unwrap_or("default");
            match object::namespace(&body) {
                Some(ns) if ns != url_ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ))
                }
                _ => {}
            }
            meta_mut(&mut body).insert("namespace".into(), json!(url_ns));
            Some(url_ns.to_string())
        } else {
            meta_mut(&mut body).remove("namespace");
            None
        };
        let name = match object::name(&body) {
            Some(n) => n.to_string(),
            None => match object::meta_str(&body, "generateName").filter(|g| !g.is_empty()) {
                Some(base) => object::generated_name(base),
                None => {
                    return Err(invalid(
                        info,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "metadata.name: Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ))
                }
            },
        };
        if let Some(ns) = &namespace {
            self.check_namespace(info, ns, &name).await?;
        }
        let now = chrono::Utc::now();
        let m = meta_mut(&mut body);
        m.insert("name".into(), json!(name));
        m.insert("uid".into(), json!(object::new_uid()));
        m.insert("creationTimestamp".into(), json!(timestamp(now)));
        for system in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            m.remove(system);
        }
        if info.strategy.has_generation {
            m.insert("generation".into(), json!(1));
        }
        (info.strategy.prepare_for_create)(&mut body);
        if info.custom.is_some() && info.has_status {
            // A custom resource's status is written through its status subresource only
            // (and, having no Go struct, is absent rather than empty).
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
        }
        if self.mount_service_account_tokens && info.group.is_empty() && info.plural == "pods" {
            self.admit_service_account(namespace.as_deref().unwrap_or("default"), &mut body).await;
        }
        if info.group.is_empty() && info.plural == "pods" {
            self.admit_pod_policies(namespace.as_deref().unwrap_or("default"), &name, &mut body).await?;
        }
        let mut warnings = Vec::new();
        let mut obj = Self::admit(info, &name, body, None, opts, &mut warnings)?;
        if let Some(manager) = &opts.field_manager {
            managed_fields::record_update(info.strategy.patch_schema, None, &mut obj, manager, &timestamp(now));
        }
        let key = storage::object_key(info, namespace.as_deref(), &name);
        for attempt in 0..MAX_CREATE_ATTEMPTS {
            let mut candidate = obj.clone();
            let allocations = services::allocate(info, &mut candidate, None)
                .map_err(|(field, value, detail)| field_invalid(info, &name, &field, &value, &detail))?;
            // Allocation fills fields (a Service's clusterIP, nodePorts) that admission saw
            // empty; only then is there anything new to validate.
            if services::allocates(info) {
                let errors = validate::validate_create(info, &candidate);
                if !errors.is_empty() {
                    return Err(invalid(info, &name, causes(errors)));
                }
            }
            // Quota admission: the quotas' new usage is written with the object, each
            // guarded on the revision it was computed from. The first attempt reads this
            // member's state; a stale read only fails a guard.
            let quota_updates = match &namespace {
                Some(ns) => self.admit_quotas(info, ns, &name, &candidate, attempt > 0).await?,
                None => Vec::new(),
            };
            if opts.dry_run {
                return Ok(Written { object: candidate, warnings, changed: true });
            }
            let mut guards = vec![Guard::Absent(key.clone())];
            let mut quota_writes = Vec::new();
            for (quota_key, rev, bytes) in &quota_updates {
                guards.push(Guard::ModRevision(quota_key.clone(), *rev));
                quota_writes.push(Write::Put(quota_key.clone(), bytes.clone()));
            }
            if let Some(ns) = &namespace {
                let ns_info = resource::find("", "v1", "namespaces").expect("served");
                guards.push(Guard::Present(storage::object_key(ns_info, None, ns)));
            }
            let mut writes = vec![Write::Put(key.clone(), storage::encode(&candidate))];
            for a in &allocations.added {
                guards.push(Guard::Absent(a.clone()));
                writes.push(Write::Put(a.clone(), key.clone().into_bytes()));
            }
            writes.extend(quota_writes);
            if let Some(rev) = self.storage.guarded(&guards, writes).await? {
                object::set_resource_version(&mut candidate, rev);
                return Ok(Written { object: candidate, warnings, changed: true });
            }
            // Why did the guard fail?
            if self.storage.get(&key, true).await?.is_some() {
                return Err(ApiError::AlreadyExists(subject(info, &name)));
            }
            if let Some(ns) = &namespace {
                self.check_namespace(info, ns, &name).await?;
            }
            if let Some((field, value)) = allocations.user_chosen_taken(self.storage.store()).await? {
                // kube-apiserver's words: a NodePort is a port, a ClusterIP an IP.
                let what = if field.contains("nodePort") {
                    "provided port is already allocated"
                } else {
                    "provided IP is already allocated"
                };
                return Err(field_invalid(info, &name, &field, &value, what));
            }
            // A randomly chosen allocation was taken or a quota changed meanwhile: again.
            if !quota_updates.is_empty() {
                // Concurrent creates against one quota: spread the retries out.
                let jitter = rand::random::<u64>() % (2 + 2 * attempt.min(10) as u64);
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
        }
        Err(ApiError::Timeout(format!(
            "could not create {} {name:?} after {MAX_CREATE_ATTEMPTS} attempts",
            info.plural
        )))
    }

    /// ResourceQuota admission of a create ([`quota`]): refuses it (403, kube-apiserver's
    /// message) or returns each affected quota's key, the revision it was read at and its
    /// new stored bytes with `status.used` raised by the object's usage.
    async fn admit_quotas(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        obj: &Value,
        consistent: bool,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, ApiError> {
        let quota_info = resource::find("", "v1", "resourcequotas").expect("resourcequotas are served");
        let prefix = storage::prefix(quota_info, Some(namespace));
        let page = if consistent {
            self.storage.scan(&prefix, &prefix, 0, 0).await?
        } else {
            self.storage.scan_few_serializable(&prefix).await?
        };
        let now = chrono::Utc::now();
        let mut updates = Vec::new();
        for stored in page.items {
            let state = quota::QuotaState::from_object(&stored.object);
            match quota::admit(info, obj, &state, now) {
                Ok(None) => {}
                Ok(Some(used)) => {
                    let mut updated = stored.object.clone();
                    if !updated["status"].is_object() {
                        updated["status"] = json!({});
                    }
                    updated["status"]["used"] = quota::to_json(&used);
                    updates.push((stored.key, stored.mod_revision, storage::encode(&updated)));
                }
                Err(message) => {
                    tracing::debug!(quota = %state.name, %message, "create refused by quota");
                    return Err(ApiError::Forbidden(format!(
                        "{} \"{name}\" is forbidden: {message}",
                        info.qualified()
                    )));
                }
            }
        }
        Ok(updates)
    }

    /// Read-modify-write: `change` maps the current object to the desired one (or an error).
    /// Retries on a concurrent write unless `change` pins a resourceVersion itself.
    #[tracing::instrument(level = "debug", skip(self, info, opts, change), fields(resource = info.plural))]
    pub async fn modify(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        while may_retry(attempt, started) {
            attempt += 1;
            // The first attempt reads this member's applied state, without a read-index round
            // to a quorum: the write is guarded on the mod_revision read, so a stale read can
            // only fail the guard. Every other answer (NotFound, a refusal by `change`, a
            // conflict, invalid) — and any outcome that wrote nothing (no change, dry run) —
            // is re-derived from a linearizable read before it is returned.
            let consistent = attempt > 1;
            match self.modify_once(info, namespace, name, part, opts, &mut change, consistent).await {
                Ok(Some(w)) if consistent || (w.changed && !opts.dry_run) => return Ok(w),
                Ok(_) => continue,
                Err(_) if !consistent => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(info, name))
    }

    /// One read-modify-write attempt. `Ok(None)`: someone wrote first (retry).
    #[allow(clippy::too_many_arguments)]
    async fn modify_once(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        change: &mut impl FnMut(&Value) -> Result<Value, ApiError>,
        consistent: bool,
    ) -> Result<Option<Written>, ApiError> {
        let key = storage::object_key(info, namespace, name);
        let current = self.storage.get(&key, consistent).await?.ok_or_else(|| not_found(info, name))?;
        let mut desired = change(&current.object)?;
        Self::check_type(info, &mut desired)?;
        let pinned = object::resource_version(&desired).map(String::from);
        if let Some(rv) = &pinned {
            if rv.parse::<i64>().ok() != Some(current.mod_revision) {
                return Err(conflict(info, name));
            }
        }
        match self.write_update(info, namespace, name, &current, desired, part, opts).await? {
            Some(w) => Ok(Some(w)),
            None if pinned.is_some() => Err(conflict(info, name)),
            None => Ok(None),
        }
    }

    /// PUT: replaces the object (or its status) with `body`.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if let Some(body_name) = object::name(&body) {
            if body_name != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        if let (true, Some(url_ns), Some(body_ns)) = (info.namespaced, namespace, object::namespace(&body)) {
            if url_ns != body_ns {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
        }
        self.modify(info, namespace, name, part, opts, |_| Ok(body.clone())).await
    }

    /// One attempt at writing `desired` over `current`. `None`: someone wrote first.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        current: &Stored,
        desired: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Option<Written>, ApiError> {
        let old = &current.object;
        check_identity(info, namespace, name, old, &desired)?;
        let mut new = merge_parts(info, old, desired, part);
        carry_system_metadata(old, &mut new);
        if info.namespaced {
            meta_mut(&mut new).insert("namespace".into(), json!(namespace.unwrap_or("default")));
        }
        meta_mut(&mut new).insert("name".into(), json!(name));
        let generation = old["metadata"]["generation"].as_i64();
        if let Some(gen) = generation {
            meta_mut(&mut new).insert("generation".into(), json!(gen));
        }
        let mut warnings = Vec::new();
        let mut new = if opts.trusted { new } else { Self::admit(info, name, new, Some(old), opts, &mut warnings)? };
        // Compared after admission: a write whose only spec change is a field the typed
        // check drops (or a default it fills back in) changes nothing and bumps nothing.
        if let Some(gen) = generation {
            if spec_part(old) != spec_part(&new) {
                meta_mut(&mut new).insert("generation".into(), json!(gen + 1));
            }
        }
        let allocations = services::allocate(info, &mut new, Some(old))
            .map_err(|(field, value, detail)| field_invalid(info, name, &field, &value, &detail))?;
        if same_content(old, &new) {
            return Ok(Some(Written { object: old.clone(), warnings, changed: false }));
        }
        if let Some(manager) = &opts.field_manager {
            managed_fields::record_update(
                info.strategy.patch_schema,
                Some(old),
                &mut new,
                manager,
                &timestamp(chrono::Utc::now()),
            );
        }
        if opts.dry_run {
            return Ok(Some(Written { object: new, warnings, changed: true }));
        }
        let key = current.key.clone();
        let mut guards = vec![Guard::ModRevision(key.clone(), current.mod_revision)];
        // The last finalizer of a deleting object is gone: the update completes the delete.
        if deletion_complete(info, &new) {
            let mut writes = vec![Write::Delete(key.clone())];
            writes.extend(services::allocation_keys(info, old).into_iter().map(Write::Delete));
            return match self.storage.guarded(&guards, writes).await? {
                Some(rev) => {
                    object::set_resource_version(&mut new, rev);
                    Ok(Some(Written { object: new, warnings, changed: true }))
                }
                None => Ok(None),
            };
        }
        let mut writes = vec![Write::Put(key.clone(), storage::encode(&new))];
        for a in &allocations.added {
            guards.push(Guard::Absent(a.clone()));
            writes.push(Write::Put(a.clone(), key.clone().into_bytes()));
        }
        writes.extend(allocations.released.iter().cloned().map(Write::Delete));
        match self.storage.guarded(&guards, writes).await? {
            Some(rev) => {
                object::set_resource_version(&mut new, rev);
                Ok(Some(Written { object: new, warnings, changed: true }))
            }
            None => Ok(None),
        }
    }

    /// DELETE one object.
    #[tracing::instrument(level = "debug", skip(self, info, opts), fields(resource = info.plural))]
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        while may_retry(attempt, started) {
            attempt += 1;
            let current = self.get_stored(info, namespace, name).await?;
            let obj = &current.object;
            if let Some(uid) = &opts.precondition_uid {
                let actual = object::meta_str(obj, "uid").unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::Conflict {
                        subject: subject(info, name),
                        message: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    });
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv.parse::<i64>().ok() != Some(current.mod_revision) {
                    return Err(ApiError::Conflict {
                        subject: subject(info, name),
                        message: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            current.mod_revision
                        ),
                    });
                }
            }
            let guards = [Guard::ModRevision(current.key.clone(), current.mod_revision)];
            if let Some(marked) = mark_for_deletion(info, obj, opts.grace_period_seconds, opts.propagation) {
                if opts.dry_run || same_content(obj, &marked) {
                    return Ok(Deleted::Pending(if opts.dry_run { marked } else { obj.clone() }));
                }
                let writes = vec![Write::Put(current.key.clone(), storage::encode(&marked))];
                if let Some(rev) = self.storage.guarded(&guards, writes).await? {
                    let mut marked = marked;
                    object::set_resource_version(&mut marked, rev);
                    return Ok(Deleted::Pending(marked));
                }
                continue;
            }
            if opts.dry_run {
                return Ok(Deleted::Now(obj.clone()));
            }
            let mut writes = vec![Write::Delete(current.key.clone())];
            writes.extend(services::allocation_keys(info, obj).into_iter().map(Write::Delete));
            if let Some(rev) = self.storage.guarded(&guards, writes).await? {
                let mut gone = obj.clone();
                object::set_resource_version(&mut gone, rev);
                return Ok(Deleted::Now(gone));
            }
        }
        Err(conflict(info, name))
    }
}

/// The object an update writes, before admission: for `Main`, status stays as stored (on
/// resources with a status subresource); for `Status`, only status changes.
fn merge_parts(info: &ResourceInfo, old: &Value, mut desired: Value, part: Part) -> Value {
    match part {
        Part::Main if info.has_status => {
            copy_status(old, &mut desired);
            desired
        }
        Part::Main | Part::Whole => desired,
        Part::Status => {
            let mut new = old.clone();
            copy_status(&desired, &mut new);
            new
        }
    }
}

/// `to` takes `from`'s status, or none where `from` has none.
fn copy_status(from: &Value, to: &mut Value) {
    match from.get("status") {
        Some(s) => to["status"] = s.clone(),
        None => {
            if let Some(m) = to.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

/// Fields clients cannot change on update.
fn carry_system_metadata(old: &Value, new: &mut Value) {
    let old_meta = object::meta(old).cloned().unwrap_or_default();
    let m = meta_mut(new);
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName"] {
        match old_meta.get(field) {
            Some(v) => {
                m.insert(field.into(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
    if !m.contains_key("managedFields") {
        if let Some(mf) = old_meta.get("managedFields") {
            m.insert("managedFields".into(), mf.clone());
        }
    }
    m.remove("selfLink");
}

/// A deleting object nothing waits for any more: the write that got it here deletes it.
fn deletion_complete(info: &ResourceInfo, obj: &Value) -> bool {
    object::is_deleting(obj)
        && object::finalizers(obj).is_empty()
        && !graceful_pending(info, obj)
        && !(info.strategy.deletion == Deletion::Namespace
            && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()))
}

/// A pod whose graceful deletion still waits for its agent.
fn graceful_pending(info: &ResourceInfo, obj: &Value) -> bool {
    info.strategy.deletion == Deletion::GracefulPod
        && object::meta(obj).and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64).unwrap_or(0) > 0
}

/// The marked version of `obj` when its deletion must wait, or `None` to delete now.
fn mark_for_deletion(info: &ResourceInfo, obj: &Value, grace: Option<i64>, propagation: Propagation) -> Option<Value> {
    let now = chrono::Utc::now();
    let mut marked = obj.clone();
    if let Some(f) = propagation.finalizer() {
        if !object::finalizers(obj).iter().any(|have| have == f) {
            let list = meta_mut(&mut marked).entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!(f));
            }
        }
    }
    let finalizers = object::finalizers(&marked);
    match info.strategy.deletion {
        Deletion::GracefulPod => {
            let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
            let finished = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            let default_grace = obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            let grace = grace.unwrap_or(default_grace).max(0);
            let waits_for_agent = bound && !finished && grace > 0;
            if !waits_for_agent && finalizers.is_empty() {
                return None;
            }
            let grace = if waits_for_agent { grace } else { 0 };
            // A second delete may shorten the grace period, never lengthen it.
            let previous = object::meta(obj).and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64);
            if previous.is_some_and(|p| p <= grace) {
                return Some(marked);
            }
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(timestamp(now + chrono::Duration::seconds(grace))));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            Some(marked)
        }
        Deletion::Namespace => {
            if deletion_complete(info, obj) {
                return None;
            }
            if !object::is_deleting(obj) {
                let m = meta_mut(&mut marked);
                m.insert("deletionTimestamp".into(), json!(timestamp(now)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            marked["status"]["phase"] = json!("Terminating");
            Some(marked)
        }
        Deletion::Finalizers if !finalizers.is_empty() => {
            if !object::is_deleting(obj) {
                let m = meta_mut(&mut marked);
                m.insert("deletionTimestamp".into(), json!(timestamp(now)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            Some(marked)
        }
        Deletion::Finalizers => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let qos_class = |res: Value| {
            let pods = resource::find("", "v1", "pods").unwrap();
            let mut pod = json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
            (pods.strategy.prepare_for_create)(&mut pod);
            pod["status"]["qosClass"].clone()
        };
        assert_eq!(qos_class(json!({})), "BestEffort");
        assert_eq!(qos_class(json!({"limits": {"cpu": "1", "memory": "1Gi"}})), "Guaranteed");
        assert_eq!(qos_class(json!({"requests": {"cpu": "1"}})), "Burstable");
        // Regression (issue 16): raw strings were compared and ephemeral-storage counted.
        let equal_by_value = json!({
            "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": "1000m", "memory": "1Gi"}
        });
        assert_eq!(qos_class(equal_by_value), "Guaranteed");
        assert_eq!(qos_class(json!({"requests": {"ephemeral-storage": "1Gi"}})), "BestEffort");
    }

    #[test]
    fn status_and_main_updates_touch_their_part_only() {
        let deploy = resource::find("apps", "v1", "deployments").unwrap();
        let old = json!({"spec": {"replicas": 1}, "status": {"replicas": 1}});
        let main = merge_parts(deploy, &old, json!({"spec": {"replicas": 3}, "status": {"replicas": 9}}), Part::Main);
        assert_eq!(main, json!({"spec": {"replicas": 3}, "status": {"replicas": 1}}));
        let status =
            merge_parts(deploy, &old, json!({"spec": {"replicas": 3}, "status": {"replicas": 9}}), Part::Status);
        assert_eq!(status, json!({"spec": {"replicas": 1}, "status": {"replicas": 9}}));
    }

    #[test]
    fn pods_on_a_node_wait_for_the_agent() {
        let pods = resource::find("", "v1", "pods").unwrap();
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(mark_for_deletion(pods, &unbound, None, Propagation::Background).is_none());
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let marked = mark_for_deletion(pods, &bound, None, Propagation::Background).unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(mark_for_deletion(pods, &bound, Some(0), Propagation::Background).is_none(), "grace 0 deletes at once");
        let cm = resource::find("", "v1", "configmaps").unwrap();
        assert!(
            mark_for_deletion(cm, &json!({"metadata": {"finalizers": ["x"]}}), None, Propagation::Background).is_some()
        );
    }
}

//! batch/v1 rules: Job (generated selector, counters, completion mode, restart policy,
//! immutable template) and CronJob (schedule syntax as robfig/cron's `ParseStandard`,
//! concurrency policy, history limits, job template).

use serde_json::Value;

use super::json::{self, bool_at, child, get, int_at, obj_at, q, render, str_at};
use super::meta::{self, nonnegative, validate_label_selector};
use super::names::NameRule;
use super::pod;
use super::{Errs, FieldError};

pub(crate) use berth_proto::model::well_known::LABEL_JOB_CONTROLLER_UID as CONTROLLER_UID_LABEL;
pub(crate) use berth_proto::model::well_known::LABEL_JOB_NAME as JOB_NAME_LABEL;
pub(crate) const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub(crate) const LEGACY_JOB_NAME_LABEL: &str = "job-name";

pub(crate) fn validate_job(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    validate_generated_selector(obj, spec, errs);
    validate_job_spec(errs, spec, "spec");
    let selector = match obj_at(errs, spec, "spec", "selector") {
        Some(sel) => Some(validate_label_selector(errs, sel, "spec.selector")),
        None => {
            if get(spec, "selector").is_none() {
                errs.push(FieldError::required("spec.selector", ""));
            }
            None
        }
    };
    if let Some(sel) = selector.filter(|s| s.valid) {
        pod::validate_template_matches(errs, spec, &sel);
    }
}

/// `ValidateGeneratedSelector`: unless `manualSelector`, the template must carry the
/// controller-uid and job-name labels and the selector must select them.
fn validate_generated_selector(obj: &Value, spec: &Value, errs: &mut Errs) {
    if get(spec, "manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(selector) = get(spec, "selector") else { return };
    let uid = meta::meta_str(obj, "uid");
    let name = meta::meta_str(obj, "name");
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = pod::template_labels(spec, "template");
    let path = "spec.template.metadata";
    for (k, expected) in [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ] {
        let field = json::key(&child(path, "labels"), k);
        match labels.iter().find(|(lk, _)| *lk == k) {
            None => errs.push(FieldError::required(&field, &format!("must be '{expected}'"))),
            Some((_, v)) if *v != expected => errs.push(FieldError::invalid(
                &field,
                json::render_string_map(&labels),
                &format!("must be '{expected}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = [
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
    ];
    let sel = meta::selector_of(selector);
    if sel.valid && !sel.matches(&expected) {
        errs.push(FieldError::invalid("spec.selector", render(selector), "`selector` not auto-generated"));
    }
}

/// `validateJobSpec`, shared by Jobs and CronJob job templates.
fn validate_job_spec(errs: &mut Errs, spec: &Value, path: &str) {
    for f in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        if let Some(v) = int_at(errs, spec, path, f) {
            nonnegative(errs, &child(path, f), v);
        }
    }
    bool_at(errs, spec, path, "suspend");
    bool_at(errs, spec, path, "manualSelector");
    let mode = str_at(errs, spec, path, "completionMode");
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if get(spec, "completions").is_none() {
                errs.push(FieldError::required(&child(path, "completions"), "when completion mode is Indexed"));
            }
        }
        Some(other) => {
            errs.push(FieldError::not_supported(&child(path, "completionMode"), q(other), &["NonIndexed", "Indexed"]))
        }
    }
    if let Some(bpi) = int_at(errs, spec, path, "backoffLimitPerIndex") {
        nonnegative(errs, &child(path, "backoffLimitPerIndex"), bpi);
        if mode != Some("Indexed") {
            errs.push(FieldError::invalid(
                &child(path, "backoffLimitPerIndex"),
                bpi.to_string(),
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(prp) = str_at(errs, spec, path, "podReplacementPolicy") {
        if !["TerminatingOrFailed", "Failed"].contains(&prp) {
            errs.push(FieldError::not_supported(
                &child(path, "podReplacementPolicy"),
                q(prp),
                &["TerminatingOrFailed", "Failed"],
            ));
        }
    }
    pod::validate_pod_template(errs, spec, path, "template", &[]);
    let rp_path = child(path, "template.spec.restartPolicy");
    let rp = json::dig(spec, &["template", "spec", "restartPolicy"]).and_then(Value::as_str).unwrap_or("");
    let has_failure_policy = get(spec, "podFailurePolicy").is_some();
    match rp {
        // An omitted policy was defaulted to Always: kube-apiserver then says
        // `Unsupported value: "Always"`; Required is for an empty one (no defaulting).
        "" => errs.push(FieldError::required(&rp_path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" if has_failure_policy => errs.push(FieldError::invalid(
            &rp_path,
            q(rp),
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(&rp_path, q(other), &["OnFailure", "Never"])),
    }
}

/// `ValidateJobSpecUpdate`: selector, completion mode and (unless the job is suspended and
/// never started) the pod template are immutable; completions too except for Indexed jobs
/// scaled in tandem with parallelism.
pub(crate) fn validate_job_update(old: &Value, new: &Value, errs: &mut Errs) {
    let null = Value::Null;
    let os = get(old, "spec").unwrap_or(&null);
    let ns = get(new, "spec").unwrap_or(&null);
    let indexed = get(ns, "completionMode").and_then(Value::as_str) == Some("Indexed");
    if !indexed {
        meta::immutable(errs, "spec.completions", get(os, "completions"), get(ns, "completions"));
    } else if get(os, "completions") != get(ns, "completions") && get(ns, "completions") != get(ns, "parallelism") {
        errs.push(FieldError::invalid(
            "spec.completions",
            render(get(ns, "completions").unwrap_or(&null)),
            "can only be modified in tandem with spec.parallelism",
        ));
    }
    meta::immutable(errs, "spec.selector", get(os, "selector"), get(ns, "selector"));
    for f in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"] {
        meta::immutable(errs, &child("spec", f), get(os, f), get(ns, f));
    }
    let suspended_never_started =
        get(os, "suspend").and_then(Value::as_bool) == Some(true) && json::dig(old, &["status", "startTime"]).is_none();
    let mut old_template = get(os, "template").cloned().unwrap_or(Value::Null);
    let new_template = get(ns, "template").cloned().unwrap_or(Value::Null);
    if suspended_never_started {
        // Scheduling directives of a job that never ran may change (for queueing systems).
        copy_path(&mut old_template, &new_template, &["metadata", "labels"]);
        copy_path(&mut old_template, &new_template, &["metadata", "annotations"]);
        for f in ["nodeSelector", "tolerations", "schedulingGates"] {
            copy_path(&mut old_template, &new_template, &["spec", f]);
        }
        copy_path(&mut old_template, &new_template, &["spec", "affinity", "nodeAffinity"]);
        if let Some(aff) = old_template.get_mut("spec").and_then(|s| s.get_mut("affinity")) {
            if aff.as_object().is_some_and(|m| m.is_empty())
                && json::dig(&new_template, &["spec", "affinity"]).is_none()
            {
                if let Some(spec) = old_template.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("affinity");
                }
            }
        }
    }
    if old_template != new_template {
        errs.push(FieldError::invalid("spec.template", render(&new_template), meta::IMMUTABLE));
    }
}

/// Sets `dst[path]` to `src[path]` (or removes it), creating parents as needed.
fn copy_path(dst: &mut Value, src: &Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = dst;
    for p in parents {
        match json::ensure_obj(cur, p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    let Some(map) = cur.as_object_mut() else { return };
    match json::dig(src, path) {
        Some(v) => {
            map.insert(last.to_string(), v.clone());
        }
        None => {
            map.remove(*last);
        }
    }
}

pub(crate) fn validate_cronjob(obj: &Value, errs: &mut Errs) {
    meta::validate_object_meta(obj, true, NameRule::Subdomain, errs);
    let name = meta::meta_str(obj, "name");
    // Job names get an 11-character suffix and must stay valid DNS-1035-length labels.
    if name.len() > 52 {
        errs.push(FieldError::invalid("metadata.name", q(name), "must be no more than 52 characters"));
    }
    let empty = Value::Object(Default::default());
    let spec = obj_at(errs, obj, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let time_zone = str_at(errs, spec, p, "timeZone");
    match str_at(errs, spec, p, "schedule").unwrap_or("") {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        schedule => {
            if let Err(e) = parse_standard_cron(schedule) {
                errs.push(FieldError::invalid("spec.schedule", q(schedule), &e));
            }
            if schedule.contains("TZ") {
                let msg = if time_zone.is_some() {
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule"
                } else {
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
                };
                errs.push(FieldError::invalid("spec.schedule", q(schedule), msg));
            }
        }
    }
    if let Some(tz) = time_zone {
        validate_time_zone(errs, tz);
    }
    for f in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        if let Some(v) = int_at(errs, spec, p, f) {
            nonnegative(errs, &child(p, f), v);
        }
    }
    bool_at(errs, spec, p, "suspend");
    match str_at(errs, spec, p, "concurrencyPolicy").unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => {
            errs.push(FieldError::not_supported("spec.concurrencyPolicy", q(other), &["Allow", "Forbid", "Replace"]))
        }
    }
    let jt_path = "spec.jobTemplate";
    let job_template = obj_at(errs, spec, p, "jobTemplate").unwrap_or(&empty);
    if let Some(jm) = obj_at(errs, job_template, jt_path, "metadata") {
        let mp = child(jt_path, "metadata");
        meta::validate_labels_at(errs, jm, &mp, "labels");
        meta::validate_annotations_at(errs, jm, &mp, "annotations");
    }
    let js_path = child(jt_path, "spec");
    let job_spec = obj_at(errs, job_template, jt_path, "spec").unwrap_or(&empty);
    validate_job_spec(errs, job_spec, &js_path);
    if let Some(sel) = get(job_spec, "selector") {
        errs.push(FieldError::invalid(&child(&js_path, "selector"), render(sel), "`selector` will be auto-generated"));
    }
    if get(job_spec, "manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported(&child(&js_path, "manualSelector"), "true".to_string(), &["nil", "false"]));
    }
}

/// An IANA name known to the tz database (never the implicit "Local"), as Kubernetes'
/// `validateTimeZone` (`time.LoadLocation`).
fn validate_time_zone(errs: &mut Errs, tz: &str) {
    let shape_ok = !tz.is_empty()
        && tz.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/'))
        && !tz.starts_with('/')
        && !tz.ends_with('/');
    if tz == "Local" {
        errs.push(FieldError::invalid(
            "spec.timeZone",
            q(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    } else if !shape_ok || jiff::tz::TimeZone::get(tz).is_err() {
        errs.push(FieldError::invalid("spec.timeZone", q(tz), &format!("unknown time zone {tz}")));
    }
}

/// robfig/cron v3 `ParseStandard`: five fields or a descriptor, with its error texts. A
/// `TZ=`/`CRON_TZ=` prefix is skipped here as robfig does; the caller refuses it with
/// Kubernetes' own message.
pub(crate) fn parse_standard_cron(spec: &str) -> Result<(), String> {
    let mut spec = spec.trim();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let i = spec.find(' ').ok_or_else(|| "provided bad location".to_string())?;
        spec = spec[i..].trim();
    }
    crate::cron::Schedule::parse(spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_accepts() {
        for s in [
            "*/1 * * * *",
            "0 0 * * *",
            "@hourly",
            "@daily",
            "@every 1h30m",
            "5 4 * * sun",
            "0 22 * * 1-5",
            "0 0 1 jan,jul *",
            "0 0 ? * MON",
            "0-59/15 * * * *",
            "30 2 * * 0",
        ] {
            assert_eq!(parse_standard_cron(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn cron_rejects_with_robfig_messages() {
        let cases = [
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ];
        for (s, msg) in cases {
            assert_eq!(parse_standard_cron(s), Err(msg.to_string()), "{s}");
        }
    }
}

//! Printers of Jobs and CronJobs.

use berth_proto::model::duration::human_duration;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;

pub static JOB: Printer = Printer { columns: JOB_COLS, row: job_row };
pub static CRON_JOB: Printer = Printer { columns: CRON_JOB_COLS, row: cron_job_row };

const D_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this \
                              field for you. More info: \
                              https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

static JOB_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. \
         However, it may decrease in reaction to scale down of elastic indexed jobs.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", D_JOB_SELECTOR),
];

static CRON_JOB_COLS: &[Col] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see \
         https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the \
         time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset \
         is loaded from the system-wide time zone database by the API server during CronJob validation and the \
         controller manager during execution. If no system-wide time zone database can be found a bundled version of \
         the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due \
         to a change in host configuration, the controller will stop creating new new Jobs and will create a system \
         event with the reason UnknownTimeZone. More information can be found in \
         https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started \
         executions. Defaults to false.",
    ),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", D_JOB_SELECTOR),
];

fn job_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(obj, &["status", "succeeded"]);
    let completions = match opt_int(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time(obj, &["status", "startTime"]), time(obj, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(done)) => human_duration(done - start),
    };
    let conditions = list(obj, &["status", "conditions"]);
    let status = if first_condition_true(conditions, "Complete") {
        "Complete"
    } else if first_condition_true(conditions, "Failed") {
        "Failed"
    } else if deleting(obj) {
        "Terminating"
    } else if first_condition_true(conditions, "Suspended") {
        "Suspended"
    } else if first_condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = container_cells(at(obj, &["spec", "template", "spec"]));
    vec![
        name(obj),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

fn cron_job_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match time(obj, &["status", "lastScheduleTime"]) {
        Some(t) => human_duration(now - t),
        None => "<none>".to_string(),
    };
    let time_zone = at(obj, &["spec", "timeZone"]).and_then(Value::as_str).unwrap_or("<none>");
    // printBoolPtr; v1 defaulting sets suspend=false, so the stored object never shows "<unset>".
    let suspend = if flag(obj, &["spec", "suspend"]) { "True" } else { "False" };
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
    let [containers, images] = container_cells(job_spec.and_then(|s| at(s, &["template", "spec"])));
    vec![
        name(obj),
        Value::from(text(obj, &["spec", "schedule"])),
        Value::from(time_zone),
        Value::from(suspend),
        Value::from(list(obj, &["status", "active"]).len()),
        Value::from(last_schedule),
        age(obj, now),
        containers,
        images,
        Value::from(format_label_selector(job_spec.and_then(|s| at(s, &["selector"])))),
    ]
}

// ---------------------------------------------------------------------------------------------

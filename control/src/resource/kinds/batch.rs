//! Strategies of the batch/v1 kinds.

use k8s_openapi::api::batch::v1;

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::Strategy;
use crate::resource::typed::round_trip;
use crate::resource::validate::{batch, defaults};

pub static JOB: Strategy = Strategy {
    defaults: defaults::default_job,
    validate_update: batch::validate_job_update,
    prepare_for_create: clear_status,
    patch_schema: Ty::JobRoot,
    ..Strategy::of(batch::validate_job, round_trip::<v1::Job>, &printers::JOB)
};

pub static CRON_JOB: Strategy = Strategy {
    defaults: defaults::default_cronjob,
    prepare_for_create: clear_status,
    patch_schema: Ty::CronJobRoot,
    ..Strategy::of(batch::validate_cronjob, round_trip::<v1::CronJob>, &printers::CRON_JOB)
};

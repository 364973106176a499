//! Strategies of the batch/v1 kinds.

use k8s_openapi::api::batch::v1;

use super::clear_status;
use crate::resource::patch_schema::Ty;
use crate::resource::printers;
use crate::resource::strategy::{Deletion, Strategy};
use crate::resource::typed::round_trip;
use crate::resource::validate::{batch, defaults, no_update_rules};

pub static JOB: Strategy = Strategy {
    defaults: defaults::default_job,
    validate: batch::validate_job,
    validate_update: batch::validate_job_update,
    decode: round_trip::<v1::Job>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::JobRoot,
    printer: &printers::JOB,
    deletion: Deletion::Finalizers,
};

pub static CRON_JOB: Strategy = Strategy {
    defaults: defaults::default_cronjob,
    validate: batch::validate_cronjob,
    validate_update: no_update_rules,
    decode: round_trip::<v1::CronJob>,
    prepare_for_create: clear_status,
    has_generation: true,
    patch_schema: Ty::CronJobRoot,
    printer: &printers::CRON_JOB,
    deletion: Deletion::Finalizers,
};

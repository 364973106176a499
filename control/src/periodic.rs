//! The clock of a periodic loop that stops on cancellation: the garbage collector,
//! node lifecycle, namespace, quota and HPA sweeps and the metrics scraper all wait for a
//! tick, then run one pass that cancellation may cut short.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub struct Every {
    tick: Interval,
    cancel: CancellationToken,
}

impl Every {
    /// The first tick is immediate; a pass that overruns delays the next tick rather than
    /// triggering a burst of catch-up passes.
    pub fn new(period: Duration, cancel: CancellationToken) -> Every {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Every { tick, cancel }
    }

    /// Waits for the next tick; false once cancelled.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }

    /// Runs one pass; None when cancellation cut it short.
    pub async fn pass<F: Future>(&self, pass: F) -> Option<F::Output> {
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            out = pass => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_until_cancelled_and_cuts_a_pass_short() {
        let cancel = CancellationToken::new();
        let mut every = Every::new(Duration::from_secs(1), cancel.clone());
        assert!(every.tick().await);
        assert_eq!(every.pass(async { 7 }).await, Some(7));
        cancel.cancel();
        assert!(!every.tick().await);
        assert_eq!(every.pass(std::future::pending::<()>()).await, None);
    }
}

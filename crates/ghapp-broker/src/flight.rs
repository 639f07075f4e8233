//! Single-flight: one spawned task does the work, any number of callers wait for its result.
//!
//! The work runs in its own task, so a caller that gives up (its future dropped) cancels
//! nothing that others wait on. The result is broadcast through a `watch` channel, which any
//! late joiner reads at once. No lock is held while waiting.

use tokio::sync::watch;

/// The completing side, owned by the task doing the work.
pub(crate) struct FlightSender<T>(watch::Sender<Option<T>>);

/// A handle to wait on; clone one per waiter.
#[derive(Clone)]
pub(crate) struct Flight<T>(watch::Receiver<Option<T>>);

/// A new flight with no result yet.
pub(crate) fn flight<T>() -> (FlightSender<T>, Flight<T>) {
    let (tx, rx) = watch::channel(None);
    (FlightSender(tx), Flight(rx))
}

impl<T> FlightSender<T> {
    /// Publishes the result to every waiter, present and future.
    pub(crate) fn complete(self, value: T) {
        self.0.send_replace(Some(value));
    }
}

impl<T: Clone> Flight<T> {
    /// The result; `None` if the task ended without one (it panicked or was aborted).
    pub(crate) async fn wait(mut self) -> Option<T> {
        let waited = self
            .0
            .wait_for(Option::is_some)
            .await
            .ok()
            .map(|value| value.clone());
        match waited {
            Some(value) => value,
            None => self.0.borrow().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn many_waiters_one_result_and_dropping_a_waiter_cancels_nothing() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = flight::<u32>();
        let counter = runs.clone();
        tokio::spawn(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            tx.complete(7);
        });
        let impatient =
            tokio::time::timeout(std::time::Duration::from_millis(10), rx.clone().wait()).await;
        assert!(impatient.is_err(), "gave up");
        let waiters: Vec<_> = (0..100).map(|_| tokio::spawn(rx.clone().wait())).collect();
        for w in waiters {
            assert_eq!(w.await.unwrap(), Some(7));
        }
        assert_eq!(
            rx.wait().await,
            Some(7),
            "late joiner reads the result at once"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_task_that_dies_yields_none() {
        let (tx, rx) = flight::<u32>();
        drop(tx);
        assert_eq!(rx.wait().await, None);
    }
}

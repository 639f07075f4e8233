//! Single-flight: one spawned task does the work, any number of callers wait for its result.
//!
//! The work runs in its own task, so a caller that gives up (its future dropped) cancels
//! nothing that others wait on. The result is broadcast through a `watch` channel, which any
//! late joiner reads at once. No lock is held while waiting.
//!
//! [`spawn_flight`] is the one way a flight's task is started, for the token cache and the
//! installation cache alike: its `settle` step runs whether the work finishes or its task dies
//! (a panic under it, the runtime shutting down), so a cache never keeps a flight that nobody
//! will complete — which every later caller would join and fail on, until restart.

use std::future::Future;
use std::marker::PhantomData;
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

/// Runs `work` as the task of the flight `tx`. `settle` turns its output into the published
/// result — `Some(output)` when it finished, `None` when the task died first — and is where the
/// owning cache stores the result and removes the flight (under its own lock). The result is
/// published after `settle`, so a caller always finds either the result or the flight.
pub(crate) fn spawn_flight<T, W, S>(tx: FlightSender<T>, work: W, settle: S)
where
    T: Send + Sync + 'static,
    W: Future + Send + 'static,
    W::Output: Send,
    S: FnOnce(Option<W::Output>) -> T + Send + 'static,
{
    let mut guard = DeadFlightGuard {
        pending: Some((tx, settle)),
        output: PhantomData,
    };
    tokio::spawn(async move {
        let output = work.await;
        if let Some((tx, settle)) = guard.pending.take() {
            tx.complete(settle(Some(output)));
        }
    });
}

/// Settles a flight whose task is dropped before it finished (panic or abort), with `None`.
struct DeadFlightGuard<T, O, S: FnOnce(Option<O>) -> T> {
    pending: Option<(FlightSender<T>, S)>,
    output: PhantomData<fn() -> O>,
}

impl<T, O, S: FnOnce(Option<O>) -> T> Drop for DeadFlightGuard<T, O, S> {
    fn drop(&mut self) {
        if let Some((tx, settle)) = self.pending.take() {
            tx.complete(settle(None));
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

    #[tokio::test]
    async fn spawn_flight_settles_finished_and_dead_work() {
        let (tx, rx) = flight::<Result<u32, &'static str>>();
        spawn_flight(tx, async { 5u32 }, |out| out.ok_or("died"));
        assert_eq!(rx.wait().await, Some(Ok(5)));

        let (tx, rx) = flight::<Result<u32, &'static str>>();
        let settled = Arc::new(AtomicUsize::new(0));
        let seen = settled.clone();
        spawn_flight(
            tx,
            async {
                if true {
                    panic!("work blew up (test)");
                }
                1u32
            },
            move |out| {
                seen.fetch_add(1, Ordering::SeqCst);
                out.ok_or("died")
            },
        );
        assert_eq!(rx.wait().await, Some(Err("died")));
        assert_eq!(settled.load(Ordering::SeqCst), 1, "settled once");
    }
}

//! How one job runs: its future (handler call, panic catching, timeout, maximum lease), and
//! where it runs.
//!
//! A task per job costs a spawn and, on a multi-threaded runtime, wake-ups between threads
//! (the job task, then the dispatcher for its completion). For a handler that finishes in
//! microseconds without waiting on anything, that is most of the work. So a handler whose jobs
//! have been quick ([`Pace`]) gets each new job polled once by the dispatcher itself: when the
//! job's call finishes in that poll, no task and no timer is made; when it does not (it waits
//! on something), the same call goes on in a task of its own under its timers, exactly as a
//! spawned job would. A job that is not
//! quick puts its handler back on a task per job until it has been quick again
//! [`QUICK_STREAK`] times in a row, so a handler that runs long or blocks its thread holds up
//! the dispatcher for one poll at most, and only after a run of quick jobs.
//!
//! The call is the same on both paths, with its panics caught; the handler's timeout and the
//! maximum lease count from when the dispatcher started the job (a call finished in the first
//! poll is done whatever the time, as with tokio's `timeout`, which polls its future first), and
//! dropping the task (an abort) cancels the handler.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};
use tracing::{Instrument, Span};

use super::group::Completion;
use crate::definition::HandlerService;
use crate::job::{Job, JobError};

/// A job finishing within its first poll in less than this is quick.
pub(crate) const QUICK: Duration = Duration::from_micros(50);
/// Quick jobs in a row before a handler's jobs are polled by the dispatcher first.
pub(crate) const QUICK_STREAK: u32 = 16;

/// How quick a handler's jobs have been lately, updated by every job wherever it ran.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    streak: AtomicU32,
}

impl Pace {
    /// Whether the dispatcher should poll this handler's next job itself.
    pub(crate) fn inline(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= QUICK_STREAK
    }

    /// One job ended; `quick` when it finished in its first poll in less than [`QUICK`].
    pub(crate) fn observe(&self, quick: bool) {
        if quick {
            let s = self.streak.load(Ordering::Relaxed);
            if s < QUICK_STREAK {
                self.streak.store(s + 1, Ordering::Relaxed);
            }
        } else {
            self.streak.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether a job was quick (see [`Pace::observe`]): it finished (`c`) in the one poll it got
/// (`polls`), and that poll took `ran`, less than [`QUICK`]. For a job in a task of its own,
/// `ran` is the poll alone, not the time the task waited to be polled: behind a few hundred
/// other jobs that wait is long whatever the handler, and counting it would keep a quick
/// handler on a task per job.
fn quick(polls: u32, ran: Duration, c: &Completion) -> bool {
    polls == 1 && ran < QUICK && matches!(c, Completion::Finished { .. })
}

/// The handler call with its panics caught. Every part of it is `Unpin` (the handler's future
/// is boxed by `BoxCloneService`), so a call polled once by the dispatcher can still move into
/// a task of its own.
type Call = CatchUnwind<AssertUnwindSafe<HandlerCall>>;

/// One call of a handler's service.
enum HandlerCall {
    /// The dispatcher's own handle on the service was ready: the call's future.
    Called(<HandlerService as Service<Job<Bytes>>>::Future),
    /// It was not (a layer that limits or buffers, at its limit): the handle that asked waits
    /// for readiness by itself, then calls (the dispatcher goes on with a clone).
    Waiting(Oneshot<HandlerService, Job<Bytes>>),
    /// A service of the application's own (`JobDefinition::from_service`) panicked in
    /// `poll_ready` or `call`: the panic goes on when the call is polled, where it is caught
    /// like a panic in the handler's future.
    Panicked(Option<Box<dyn std::any::Any + Send>>),
}

impl HandlerCall {
    /// Calls `service` with `job` at once when it is ready (no clone of the service, which is
    /// an allocation per job); else `service` goes on to wait for readiness with the job and
    /// is replaced by a clone.
    fn new(service: &mut HandlerService, job: Job<Bytes>) -> Self {
        // A no-op waker: a service that is not ready now is not polled again here; the handle
        // that waits registers its own waker in its next poll.
        let mut cx = Context::from_waker(Waker::noop());
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
            match service.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => Self::Called(service.call(job)),
                // Not ready: this handle may now hold a place in the service's queue (a
                // concurrency limit's or a buffer's semaphore); left here, it would take the
                // next free slot and keep it until the next job. So this handle goes on to
                // wait, with its place, and the dispatcher keeps a fresh clone. A readiness
                // error goes the same way, to be met (or not) in the handle's own poll.
                Poll::Ready(Err(_)) | Poll::Pending => {
                    let fresh = service.clone();
                    Self::Waiting(std::mem::replace(service, fresh).oneshot(job))
                }
            }
        }));
        call.unwrap_or_else(|panic| Self::Panicked(Some(panic)))
    }
}

impl Future for HandlerCall {
    type Output = Result<(), crate::job::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Called(f) => f.as_mut().poll(cx),
            Self::Waiting(f) => Pin::new(f).poll(cx),
            Self::Panicked(panic) => match panic.take() {
                Some(p) => std::panic::resume_unwind(p),
                None => Poll::Ready(Err("the handler's service panicked".into())),
            },
        }
    }
}

/// One job, ready to run.
pub(crate) struct JobRun {
    seq: u64,
    call: Call,
    /// When the dispatcher started the job: one clock reading serves the lease, both timers
    /// and the run time.
    started: Instant,
    timeout: Option<Duration>,
    max_lease: Duration,
    span: Span,
    permit: OwnedSemaphorePermit,
}

/// Where a started job is.
pub(crate) enum Started {
    /// It finished in the dispatcher's poll, at the instant given (a clock reading the
    /// dispatcher may use as the start of the job it starts next).
    Done(Completion, Instant),
    /// It runs in its own task, which sends its completion.
    Task(AbortHandle),
}

impl JobRun {
    /// The job: the handler call with its panics caught; its timeout and the maximum lease
    /// count from `started`.
    pub(crate) fn new(
        seq: u64,
        service: &mut HandlerService,
        job: Job<Bytes>,
        (started, timeout, max_lease): (Instant, Option<Duration>, Duration),
        span: Span,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            seq,
            call: AssertUnwindSafe(HandlerCall::new(service, job)).catch_unwind(),
            started,
            timeout,
            max_lease,
            span,
            permit,
        }
    }

    /// Starts the job: its call polled here once first when its handler has been quick (no
    /// timer is made for a job that finishes in that poll), else (or when that poll did not
    /// finish it) in a task of its own, with its timers, that sends its completion on `done`.
    pub(crate) fn start(
        self,
        pace: &Arc<Pace>,
        done: &mpsc::UnboundedSender<Completion>,
    ) -> Started {
        let Self {
            seq,
            mut call,
            started,
            timeout,
            max_lease,
            span,
            permit,
        } = self;
        let mut polls = 0;
        if pace.inline() {
            polls = 1;
            // A no-op waker: should the job not finish now, its task polls it again with its
            // own waker, and every future registers the waker of its latest poll.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(r) = span.in_scope(|| Pin::new(&mut call).poll(&mut cx)) {
                let ended = Instant::now();
                let c = Completion::Finished {
                    seq,
                    result: flatten(r),
                    took: ended.saturating_duration_since(started),
                };
                drop(permit);
                pace.observe(quick(polls, ended.saturating_duration_since(started), &c));
                return Started::Done(c, ended);
            }
            // It waits on something: not quick; it goes on in its task.
            pace.observe(false);
        }
        let future = timed(call, seq, started, timeout, max_lease).instrument(span);
        let pace = pace.clone();
        let done = done.clone();
        let task = tokio::spawn(async move {
            let mut future = std::pin::pin!(future);
            let mut first_poll = None;
            let c = std::future::poll_fn(|cx| {
                polls += 1;
                if first_poll.is_none() {
                    first_poll = Some(Instant::now());
                }
                future.as_mut().poll(cx)
            })
            .await;
            drop(permit);
            let ran = first_poll.map_or(Duration::MAX, |t| t.elapsed());
            pace.observe(quick(polls, ran, &c));
            let _ = done.send(c);
        });
        Started::Task(task.abort_handle())
    }
}

/// A job's call under its timeout and the maximum lease. The lease has its own timer, so it
/// ends the handler on time rather than at the next lock renewal (the renewal still checks,
/// for a handler that blocks its thread and never yields to this timer).
async fn timed(
    call: Call,
    seq: u64,
    started: Instant,
    timeout: Option<Duration>,
    max_lease: Duration,
) -> Completion {
    let run = async move {
        match timeout {
            Some(t) => match tokio::time::timeout_at(deadline(started, t), call).await {
                Ok(r) => flatten(r),
                Err(_) => Err(JobError::retry(format!(
                    "timed out after {}",
                    crate::duration::Short(t)
                ))),
            },
            None => flatten(call.await),
        }
    };
    match tokio::time::timeout_at(deadline(started, max_lease), run).await {
        Ok(result) => Completion::Finished {
            seq,
            result,
            took: started.elapsed(),
        },
        Err(_) => Completion::LeaseExpired { seq },
    }
}

/// How far a timer may reach: about 30 years, as tokio's own `timeout` caps it (a longer
/// maximum lease or timeout is no limit in practice, and would not fit an `Instant`).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `after` from `from`, at most [`FAR`].
fn deadline(from: Instant, after: Duration) -> Instant {
    from + after.min(FAR)
}

fn flatten(
    r: Result<Result<(), crate::job::BoxError>, Box<dyn std::any::Any + Send>>,
) -> Result<(), JobError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(JobError::from_boxed(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(JobError::retry(format!("handler panicked: {msg}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Delivery, Headers, RecordId};
    use crate::job::{BoxError, HandlerContext, JobMeta};
    use tokio::sync::Semaphore;
    use tokio_util::sync::CancellationToken;
    use tower::util::BoxCloneService;

    fn job() -> Job<Bytes> {
        Job::from_meta(Arc::new(JobMeta {
            delivery: Delivery {
                id: RecordId {
                    topic: "t".into(),
                    partition: 0,
                    offset: 0,
                },
                key: None,
                value: Some(Bytes::from_static(b"x")),
                headers: Headers::default(),
                timestamp: std::time::SystemTime::UNIX_EPOCH,
                delivery_count: 1,
                lock_duration: Duration::from_secs(30),
            },
            max_attempts: 3,
            handler: Arc::new(HandlerContext {
                name: "h".into(),
                group: "g".into(),
                cancel: CancellationToken::new(),
            }),
        }))
    }

    /// Starts one job of `service` on the inline path and returns its result.
    async fn run_once(mut service: HandlerService) -> Result<(), JobError> {
        let pace = Arc::new(Pace::default());
        for _ in 0..QUICK_STREAK {
            pace.observe(true);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a free permit");
        let now = Instant::now();
        let run = JobRun::new(
            0,
            &mut service,
            job(),
            (now, None, Duration::from_secs(60)),
            Span::none(),
            permit,
        );
        let c = match run.start(&pace, &tx) {
            Started::Done(c, _) => c,
            Started::Task(_) => rx.recv().await.expect("a completion"),
        };
        match c {
            Completion::Finished { result, .. } => result,
            _ => panic!("the job did not finish"),
        }
    }

    /// A service of the application's own that panics when called, or when asked whether it
    /// is ready.
    #[derive(Clone)]
    struct Panics {
        in_ready: bool,
    }

    impl Service<Job<Bytes>> for Panics {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            assert!(!self.in_ready, "broken in poll_ready");
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Job<Bytes>) -> Self::Future {
            panic!("broken in call");
        }
    }

    #[tokio::test]
    async fn a_service_that_panics_when_called_fails_its_job_and_not_the_dispatcher() {
        // Tried: a service whose `call` panics, and one whose `poll_ready` panics; both are
        // called by the dispatcher itself (no clone), so the panic must be caught there.
        for (in_ready, words) in [(false, "broken in call"), (true, "broken in poll_ready")] {
            let err = run_once(BoxCloneService::new(Panics { in_ready }))
                .await
                .expect_err("the job fails");
            let text = err.to_string();
            assert!(text.contains("handler panicked"), "{text}");
            assert!(text.contains(words), "{text}");
        }
    }

    #[tokio::test]
    async fn a_service_that_is_not_ready_is_called_through_a_clone_that_waits() {
        // A concurrency limit of 1 whose only slot is taken by a first call that never ends:
        // the dispatcher's handle is not ready, so the second job waits with that handle (the
        // dispatcher keeps a clone); once the first call is dropped, the second runs. (Kept
        // by the dispatcher, the asking handle would hold its place in the limit's queue and
        // take the freed slot, and the second job would wait for ever.)
        let gate = Arc::new(tokio::sync::Notify::new());
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (g, c) = (gate.clone(), calls.clone());
        let inner = tower::service_fn(move |_job: Job<Bytes>| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    g.notified().await;
                }
                Ok::<(), BoxError>(())
            }
        });
        let mut service: HandlerService =
            BoxCloneService::new(tower::limit::ConcurrencyLimit::new(inner, 1));
        let mut first = HandlerCall::new(&mut service, job());
        assert!(matches!(first, HandlerCall::Called(_)));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        let second = HandlerCall::new(&mut service, job());
        assert!(matches!(second, HandlerCall::Waiting(_)));
        let waiting = tokio::spawn(second);
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the second call waits for the slot"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the second call got the freed slot")
            .expect("the task")
            .expect("the second call succeeds");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_handler_goes_inline_after_a_streak_of_quick_jobs_and_back_after_one_slow() {
        let p = Pace::default();
        for _ in 0..QUICK_STREAK - 1 {
            p.observe(true);
            assert!(!p.inline());
        }
        p.observe(true);
        assert!(p.inline());
        p.observe(true);
        assert!(p.inline());
        p.observe(false);
        assert!(!p.inline());
    }

    #[test]
    fn only_a_job_finished_in_one_short_poll_is_quick() {
        let done = |took| Completion::Finished {
            seq: 0,
            result: Ok(()),
            took,
        };
        let us = Duration::from_micros;
        assert!(quick(1, us(3), &done(us(3))));
        assert!(!quick(2, us(3), &done(us(3))));
        assert!(!quick(1, QUICK, &done(QUICK)));
        // A task that waited behind others: long from its start, its one poll short.
        assert!(quick(1, us(3), &done(us(900))));
        assert!(!quick(1, us(3), &Completion::LeaseExpired { seq: 0 }));
    }
}

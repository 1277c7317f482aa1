//! An empty response body that runs a task once hyper is done with the response: how `GET /`
//! refills the spare pool only after its `302` is on its way, so the fork of the next spare
//! never delays the answer (ARCHITECTURE.md 2).
//!
//! hyper drops the body of a response that has none to send (`is_end_stream`) as it queues
//! the head for the socket, right before it flushes; the task runs from that drop. A client
//! that went away drops the response too, so the task always runs exactly once.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};

pub struct ThenRun<F: FnOnce()> {
    then: Option<F>,
}

impl<F: FnOnce()> ThenRun<F> {
    pub fn new(then: F) -> Self {
        ThenRun { then: Some(then) }
    }
}

impl<F: FnOnce()> Drop for ThenRun<F> {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            then();
        }
    }
}

// Nothing is pinned structurally: the closure is only moved out in `drop`.
impl<F: FnOnce()> Unpin for ThenRun<F> {}

impl<F: FnOnce()> HttpBody for ThenRun<F> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_task_runs_once_when_the_body_is_dropped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let body = ThenRun::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(body.is_end_stream());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        drop(body);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

//! Response bodies: a fixed list of frames written one by one, with optional
//! delays, ending cleanly or by breaking the connection, and the guard that
//! counts responses the client walked away from.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::server::ConnControl;
use crate::state::State;

/// How long a body that breaks its connection waits first, so that hyper
/// flushes everything written before (it flushes while the body is pending).
const BREAK_GRACE: Duration = Duration::from_millis(20);

/// Counts a cancelled request when dropped before [`CancelGuard::finish`].
#[derive(Debug)]
pub(crate) struct CancelGuard {
    state: Option<Arc<State>>,
}

impl CancelGuard {
    pub(crate) fn new(state: Arc<State>) -> Self {
        CancelGuard { state: Some(state) }
    }

    /// The response was handed over in full (or ended by the server).
    pub(crate) fn finish(&mut self) {
        self.state = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.count_cancelled();
        }
    }
}

/// What happens after the last frame.
#[derive(Debug)]
pub(crate) enum Ending {
    /// End the body normally.
    Complete,
    /// Fail the body: hyper closes the connection (FIN) without finishing
    /// the message.
    Close,
    /// Abort the connection with a TCP RST.
    Reset(ConnControl),
}

/// The body of every response the mock sends.
#[derive(Debug)]
pub(crate) struct MockBody {
    frames: VecDeque<Bytes>,
    /// Set for bodies of one known length (sent with `content-length`).
    exact_len: Option<u64>,
    chunk_delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    ending: Ending,
    grace_started: bool,
    broken: bool,
    guard: Option<CancelGuard>,
}

impl MockBody {
    /// A body of known length, sent at once.
    pub(crate) fn full(bytes: Bytes) -> Self {
        let exact_len = u64::try_from(bytes.len()).ok();
        let mut body = MockBody::stream(vec![bytes], Duration::ZERO, Ending::Complete);
        body.exact_len = exact_len;
        body
    }

    /// A chunked body of `frames`, `chunk_delay` apart, then `ending`.
    pub(crate) fn stream(frames: Vec<Bytes>, chunk_delay: Duration, ending: Ending) -> Self {
        MockBody {
            frames: frames.into(),
            exact_len: None,
            chunk_delay,
            sleep: None,
            ending,
            grace_started: false,
            broken: false,
            guard: None,
        }
    }

    /// Counts a cancellation if the body is dropped before it is over.
    pub(crate) fn guarded(mut self, guard: CancelGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    fn finish(&mut self) {
        if let Some(guard) = self.guard.as_mut() {
            guard.finish();
        }
    }

    /// Carries out a breaking [`Ending`] once its grace period is over.
    fn break_connection(&mut self) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &self.ending {
            Ending::Complete => Poll::Ready(None),
            Ending::Close => {
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "mock: stream closed early"))))
            }
            Ending::Reset(control) => {
                control.reset();
                Poll::Pending
            }
        }
    }

    fn is_done(&self) -> bool {
        self.frames.is_empty() && self.sleep.is_none() && matches!(self.ending, Ending::Complete)
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if let Some(frame) = this.frames.pop_front() {
            let more = !this.frames.is_empty();
            if more && !this.chunk_delay.is_zero() {
                this.sleep = Some(Box::pin(tokio::time::sleep(this.chunk_delay)));
            }
            if !more && matches!(this.ending, Ending::Complete) {
                this.finish();
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if matches!(this.ending, Ending::Complete) {
            this.finish();
            return Poll::Ready(None);
        }
        if !this.grace_started {
            // Give hyper a chance to flush what came before, then break.
            this.grace_started = true;
            this.finish();
            let mut grace = Box::pin(tokio::time::sleep(BREAK_GRACE));
            if grace.as_mut().poll(cx).is_pending() {
                this.sleep = Some(grace);
                return Poll::Pending;
            }
        }
        if this.broken {
            return Poll::Pending;
        }
        this.broken = true;
        this.break_connection()
    }

    fn is_end_stream(&self) -> bool {
        self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) if !self.is_done() => SizeHint::with_exact(len),
            Some(_) => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}

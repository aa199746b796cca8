//! Test helpers for the stream wrappers.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The slices of each write call, in order.
pub(crate) type Calls = std::sync::Arc<std::sync::Mutex<Vec<Vec<Vec<u8>>>>>;

/// A writer that takes vectored writes whole and records each call's slices in
/// `calls` (shared, so a test keeps it when the sink is boxed away).
#[derive(Debug, Default)]
pub(crate) struct VectoredSink {
    pub(crate) calls: Calls,
}

impl AsyncRead for VectoredSink {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for VectoredSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.calls.lock().unwrap().push(vec![buf.to_vec()]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls
            .lock()
            .unwrap()
            .push(bufs.iter().map(|b| b.to_vec()).collect());
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A frame head and its payload, as h2 hands them over.
pub(crate) fn head_and_payload() -> [IoSlice<'static>; 2] {
    [IoSlice::new(b"head"), IoSlice::new(b"payload")]
}

/// What a sink must have seen after one vectored write of [`head_and_payload`].
pub(crate) fn one_call_with_both(calls: &Calls) -> bool {
    *calls.lock().unwrap() == [vec![b"head".to_vec(), b"payload".to_vec()]]
}

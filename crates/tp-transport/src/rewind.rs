//! Peeking at the start of a connection and putting the bytes back: the server half of
//! TLS routing reads the ClientHello with [`read_client_hello`], decides a route, and
//! then hands on a [`Rewind`] stream that replays what was read before the rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::alpn::{self, ClientHello, HelloError};

/// A stream that first yields `prefix`, then reads from `inner`; writes go to `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replays `prefix` before `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The underlying stream and the bytes not yet replayed.
    pub fn into_parts(self) -> (Vec<u8>, S) {
        (self.prefix[self.pos..].to_vec(), self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    // Vectored writes pass through: h2 hands over a frame head and its payload as
    // two slices, which must reach TLS together to leave as one record and one write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why no ClientHello could be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum PeekError {
    /// The bytes are not a TLS ClientHello.
    NotTls(HelloError),
    /// The peer closed before a whole ClientHello arrived.
    Closed,
    /// The peer did not send a whole ClientHello in time.
    TimedOut,
    /// A socket error.
    Io(io::Error),
}

impl std::fmt::Display for PeekError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotTls(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("connection closed before a TLS ClientHello arrived"),
            Self::TimedOut => f.write_str("no TLS ClientHello within the deadline"),
            Self::Io(e) => write!(f, "reading the ClientHello: {e}"),
        }
    }
}

impl std::error::Error for PeekError {}

/// Reads until a whole ClientHello is buffered (or `deadline` passes) and returns it
/// with the stream rewound to its first byte.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    mut stream: S,
    deadline: Duration,
) -> Result<(ClientHello, Rewind<S>), PeekError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        loop {
            if let Some(hello) = alpn::peek_client_hello(&buf).map_err(PeekError::NotTls)? {
                return Ok((hello, buf));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.map_err(PeekError::Io)?;
            if n == 0 {
                return Err(PeekError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (hello, buf) = tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| PeekError::TimedOut)??;
    Ok((hello, Rewind::new(buf, stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn vectored_writes_reach_the_inner_stream_whole() {
        use crate::test_io::{VectoredSink, head_and_payload, one_call_with_both};
        let sink = VectoredSink::default();
        let calls = sink.calls.clone();
        let mut r = Rewind::new(b"replayed".to_vec(), sink);
        assert!(r.is_write_vectored());
        assert_eq!(r.write_vectored(&head_and_payload()).await.unwrap(), 11);
        assert!(one_call_with_both(&calls), "{calls:?}");
    }

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(b"hello".to_vec(), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_garbage_is_refused() {
        let (_a, b) = tokio::io::duplex(64);
        let e = read_client_hello(b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, PeekError::TimedOut), "{e}");

        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let e = read_client_hello(b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, PeekError::NotTls(_)), "{e}");

        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        drop(a);
        let e = read_client_hello(b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, PeekError::Closed), "{e}");
    }
}

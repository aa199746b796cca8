//! Watchers, and the live half of a watch shared by the implementations.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::types::Event;

/// A stream of [`Event`]s from [`Backend::watch`](crate::Backend::watch).
///
/// Events arrive in revision order. After an error (for example
/// [`Error::Lagged`] when the watcher fell more than the watch buffer behind, or
/// [`Error::Compacted`] when history it still needed was pruned) the stream ends; a
/// stream also ends when the backend is dropped. [`position`](Self::position) is the
/// revision to resume from: `watch(Some(watcher.position()))` continues exactly where
/// this watcher stopped, as long as that history is retained.
pub struct Watcher {
    stream: BoxStream<'static, Result<Event>>,
    position: i64,
    done: bool,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("position", &self.position)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher over `stream`, positioned at revision `start` (for implementors: the
    /// stream must yield events after `start`, in revision order).
    pub fn new(start: i64, stream: BoxStream<'static, Result<Event>>) -> Self {
        Self {
            stream,
            position: start,
            done: false,
        }
    }

    /// The revision of the last event delivered, or the start revision before the
    /// first.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next event; `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<Event>> {
        self.next().await
    }
}

impl Stream for Watcher {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = self.stream.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(event))) => self.position = event.revision(),
            Poll::Ready(Some(Err(_)) | None) => self.done = true,
            Poll::Pending => {}
        }
        polled
    }
}

enum Live {
    Following {
        rx: broadcast::Receiver<Event>,
        last: i64,
    },
    Done,
}

/// Live events from `rx` with revisions after `after`; ends with [`Error::Lagged`] if
/// the receiver overflows.
pub(crate) fn live(
    rx: broadcast::Receiver<Event>,
    after: i64,
    buffer: usize,
) -> impl Stream<Item = Result<Event>> + Send + 'static {
    stream::unfold(
        Live::Following { rx, last: after },
        move |state| async move {
            let Live::Following { mut rx, mut last } = state else {
                return None;
            };
            loop {
                match rx.recv().await {
                    Ok(event) if event.revision() <= last => continue,
                    Ok(event) => {
                        last = event.revision();
                        return Some((Ok(event), Live::Following { rx, last }));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((
                            Err(Error::Lagged {
                                position: last,
                                buffer,
                            }),
                            Live::Done,
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}

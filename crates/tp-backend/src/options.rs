//! Settings shared by the implementations.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// The largest watch buffer accepted; larger values are clamped to it.
const MAX_WATCH_BUFFER: usize = 1 << 20;

/// Settings for a backend. Start from [`Options::default`] and use the `with_` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// How many of the newest events are kept for watches to replay (at least 1).
    /// Default: 10 000.
    pub history_limit: u64,
    /// How many live events a watcher may fall behind before it gets
    /// [`Error::Lagged`](crate::Error::Lagged) (1 ..= 2^20; the channel rounds it up to
    /// a power of two). Default: 1024.
    pub watch_buffer: usize,
    /// How often a background thread deletes expired items, emitting delete events;
    /// `None` leaves it to [`Backend::sweep_expired`](crate::Backend::sweep_expired).
    /// Default: every second.
    pub sweep_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            history_limit: 10_000,
            watch_buffer: 1024,
            sweep_interval: Some(Duration::from_secs(1)),
        }
    }
}

impl Options {
    /// Uses `clock` to decide expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the newest `limit` events for replay.
    pub fn with_history_limit(mut self, limit: u64) -> Self {
        self.history_limit = limit;
        self
    }

    /// Lets watchers fall `buffer` live events behind.
    pub fn with_watch_buffer(mut self, buffer: usize) -> Self {
        self.watch_buffer = buffer;
        self
    }

    /// Sweeps expired items every `interval`, or never in the background (`None`).
    pub fn with_sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The settings with out-of-range numbers clamped.
    pub(crate) fn normalized(mut self) -> Self {
        self.history_limit = self.history_limit.max(1);
        self.watch_buffer = self.watch_buffer.clamp(1, MAX_WATCH_BUFFER);
        self.sweep_interval = self.sweep_interval.map(|d| d.max(Duration::from_millis(1)));
        self
    }
}

//! The background expiry sweeper: a plain thread, so it needs no runtime and never
//! blocks a tokio worker.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::Result;

/// Stops the sweeper thread when dropped (with the backend that owns it).
#[derive(Debug)]
pub(crate) struct SweeperGuard {
    _stop: mpsc::Sender<()>,
}

/// Runs `sweep` on `target` every `interval` until the returned guard is dropped or
/// `target` is gone. `None` if the thread cannot be started (logged).
pub(crate) fn spawn<T: Send + Sync + 'static>(
    target: Weak<T>,
    interval: Duration,
    sweep: fn(&T) -> Result<u64>,
) -> Option<SweeperGuard> {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("tp-backend-sweeper".into())
        .spawn(move || {
            loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(target) = Weak::upgrade(&target) else {
                    return;
                };
                match sweep(&target) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "swept expired items"),
                    Err(e) => tracing::warn!(error = %e, "sweeping expired items failed"),
                }
                drop::<Arc<T>>(target);
            }
        });
    match spawned {
        Ok(_) => Some(SweeperGuard { _stop: stop }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the expiry sweeper; expired items are deleted only by sweep_expired");
            None
        }
    }
}

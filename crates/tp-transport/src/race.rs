//! Racing dial attempts: every candidate (address × credential × mode) runs at once
//! under one deadline; the first to succeed wins and the others are dropped (which
//! cancels them); if none succeeds, one error lists every attempt and why it failed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

/// What one attempt was: shown in the combined error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The address dialled.
    pub addr: String,
    /// Which credential (its source: a file path, a profile name, ...).
    pub credential: String,
    /// The connection mode (`direct`, `tunnel`, `discovery`, `tls-routing`, ...).
    pub mode: String,
}

impl Attempt {
    /// An attempt description.
    pub fn new(
        addr: impl Into<String>,
        credential: impl Into<String>,
        mode: impl Into<String>,
    ) -> Self {
        Self {
            addr: addr.into(),
            credential: credential.into(),
            mode: mode.into(),
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {} with {}",
            self.addr, self.mode, self.credential
        )
    }
}

/// Why an attempt did not produce a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<E> {
    /// The attempt failed with this error.
    Failed(E),
    /// The shared deadline passed first.
    TimedOut(Duration),
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "{e}"),
            Self::TimedOut(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

/// Every attempt failed: each one with its cause, in the order they were given.
#[derive(Debug)]
#[non_exhaustive]
pub struct RaceError<E> {
    /// The attempts and why each failed.
    pub attempts: Vec<(Attempt, Failure<E>)>,
}

impl<E: fmt::Display> fmt::Display for RaceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no connection attempt was possible (no address or credential)");
        }
        write!(f, "all {} connection attempts failed:", self.attempts.len())?;
        for (a, why) in &self.attempts {
            write!(f, "\n  - {a}: {why}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RaceError<E> {}

/// A boxed dial attempt.
pub type AttemptFuture<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Runs every attempt at once; returns the first success and which attempt it was, or
/// every failure. Attempts still running when one succeeds (or the deadline passes) are
/// dropped, which cancels them.
///
/// ```
/// # tokio_test_block_on(async {
/// use std::time::Duration;
/// use tp_transport::race::{race, Attempt};
/// let won = race(vec![
///     (Attempt::new("a:1", "id.pem", "direct"), Box::pin(async { Err::<u8, &str>("connection refused") }) as _),
///     (Attempt::new("b:2", "id.pem", "tunnel"), Box::pin(async { Ok::<u8, &str>(7) }) as _),
/// ], Duration::from_secs(5)).await.unwrap();
/// assert_eq!(won, (7u8, Attempt::new("b:2", "id.pem", "tunnel")));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn race<'a, T, E>(
    attempts: Vec<(Attempt, AttemptFuture<'a, T, E>)>,
    deadline: Duration,
) -> Result<(T, Attempt), RaceError<E>> {
    let descriptions: Vec<Attempt> = attempts.iter().map(|(a, _)| a.clone()).collect();
    let mut failures: Vec<Option<Failure<E>>> = descriptions.iter().map(|_| None).collect();
    let mut running: FuturesUnordered<_> = attempts
        .into_iter()
        .enumerate()
        .map(|(i, (_, fut))| async move { (i, fut.await) })
        .collect();
    let timer = tokio::time::sleep(deadline);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            next = running.next() => match next {
                Some((i, Ok(v))) => return Ok((v, descriptions[i].clone())),
                Some((i, Err(e))) => failures[i] = Some(Failure::Failed(e)),
                None => break,
            },
            () = &mut timer => break,
        }
    }
    let attempts = descriptions
        .into_iter()
        .zip(failures)
        .map(|(a, f)| (a, f.unwrap_or(Failure::TimedOut(deadline))))
        .collect();
    Err(RaceError { attempts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_success_wins_and_the_rest_are_cancelled() {
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(cancelled.clone());
        let slow: AttemptFuture<'_, &str, String> = Box::pin(async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok("slow")
        });
        let fast: AttemptFuture<'_, &str, String> = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok("fast")
        });
        let (v, a) = race(
            vec![
                (Attempt::new("s", "c", "tunnel"), slow),
                (Attempt::new("f", "c", "direct"), fast),
            ],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((v, a.mode.as_str()), ("fast", "direct"));
        assert!(
            cancelled.load(Ordering::SeqCst),
            "the losing attempt was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn all_failures_are_listed_with_their_causes() {
        let refused: AttemptFuture<'_, (), String> =
            Box::pin(async { Err("connection refused".to_string()) });
        let hangs: AttemptFuture<'_, (), String> = Box::pin(std::future::pending());
        let e = race(
            vec![
                (
                    Attempt::new("127.0.0.1:1", "identity.pem", "direct"),
                    refused,
                ),
                (Attempt::new("proxy:3024", "identity.pem", "tunnel"), hangs),
            ],
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("all 2 connection attempts failed:"),
            "{msg}"
        );
        assert!(
            msg.contains("127.0.0.1:1 via direct with identity.pem: connection refused"),
            "{msg}"
        );
        assert!(
            msg.contains("proxy:3024 via tunnel with identity.pem: timed out after 3s"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn no_attempts_is_an_error_that_says_so() {
        let e = race::<(), String>(vec![], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no connection attempt"), "{e}");
    }
}

//! A spinner on standard error while a command waits on the network, as `tsh login`
//! shows one. Only on a terminal: redirected output gets no control characters.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The frames drawn in turn.
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How often a new frame is drawn.
const TICK: Duration = Duration::from_millis(100);

/// A running spinner; [`Spinner::stop`] (or dropping it) erases its line.
pub struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
    out: Option<Arc<Mutex<dyn Write + Send>>>,
}

impl std::fmt::Debug for Spinner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spinner")
            .field("running", &self.task.is_some())
            .finish()
    }
}

impl Spinner {
    /// Shows `message` with a spinner on standard error when it is a terminal; otherwise
    /// does nothing.
    pub fn start(message: &str) -> Self {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Self {
                task: None,
                out: None,
            };
        }
        Self::on(Arc::new(Mutex::new(std::io::stderr())), message)
    }

    /// Shows `message` with a spinner on `out` (a terminal), until stopped. Must run
    /// inside a tokio runtime.
    pub fn on(out: Arc<Mutex<dyn Write + Send>>, message: &str) -> Self {
        let message = message.to_string();
        let drawn = out.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            for frame in FRAMES.iter().cycle() {
                tick.tick().await;
                if let Ok(mut w) = drawn.lock() {
                    let _ = write!(w, "\r{frame} {message}");
                    let _ = w.flush();
                }
            }
        });
        Self {
            task: Some(task),
            out: Some(out),
        }
    }

    /// Stops the spinner and erases its line.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(out) = self.out.take()
            && let Ok(mut w) = out.lock()
        {
            // Carriage return, then erase the line (ANSI EL2).
            let _ = write!(w, "\r\x1b[2K");
            let _ = w.flush();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_draws_frames_and_erases_its_line() {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let s = Spinner::on(buf.clone(), "Logging in");
        tokio::time::sleep(TICK * 3 + TICK / 2).await;
        s.stop();
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("\r⠋ Logging in\r⠙ Logging in"), "{text:?}");
        assert!(text.ends_with("\r\x1b[2K"), "{text:?}");
        let frames = text.matches("Logging in").count();
        assert!((3..=5).contains(&frames), "{frames} frames: {text:?}");
        // Nothing more is drawn once stopped.
        tokio::time::sleep(TICK * 5).await;
        assert_eq!(buf.lock().unwrap().len(), text.len());
    }
}

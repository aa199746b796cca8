//! The tp binaries' shared code: `tpd` runs the cluster, `tpctl` administers it like
//! `tctl`, `tpsh` logs a user in like `tsh`.
//!
//! **One job:** parse what a person types and format what they read. This is the only
//! crate that formats output for people.
//!
//! **Never depended on:** no library crate may depend on `tp-cli`.
//!
//! # Status
//!
//! `tpd start` runs the Auth server and the Proxy in one process (state in SQLite, or in
//! memory for tests), or either alone (`--roles`; a proxy alone joins with a token file,
//! [`join`]), from flags or a Teleport-style YAML file ([`config`]), and writes the
//! local admin identity; `tpctl` creates, lists and deletes roles, users and tokens,
//! invites users, signs identities, reads the audit log and reports status; `tpsh` logs
//! a user in through the proxy (with a [`spinner`] on a terminal) and writes a
//! tsh-layout profile or an identity file.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed (the message says why) |
//! | 2 | the command line is wrong |

pub mod cluster;
pub mod config;
pub mod diag;
pub mod join;
pub mod paths;
pub mod spinner;

use std::fmt;

/// An error for a person: one line naming the problem, and a hint line.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong.
    pub message: String,
    /// What to try.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// An error without a hint.
    pub fn plain(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// Prints the error the way every tp command does and returns exit code 1.
pub fn report(e: &CliError) -> std::process::ExitCode {
    eprintln!("{e}");
    std::process::ExitCode::from(1)
}

/// Formats a TTL the way `tctl` does: Go duration syntax with trailing zero units
/// trimmed (`1h0m0s` → `1h`, `30m0s` → `30m`).
pub fn short_duration(secs: i64) -> String {
    let s = tp_proto::duration::format_go(secs.saturating_mul(1_000_000_000));
    // Go prints "1h30m0s"; tctl-style output drops zero trailing units: "1h30m", "8h".
    let mut s = s;
    if s.ends_with("m0s") || s.ends_with("h0s") {
        s.truncate(s.len() - 2);
    }
    if s.ends_with("h0m") {
        s.truncate(s.len() - 2);
    }
    if s.is_empty() { "0s".into() } else { s }
}

/// Prints shell completions for `cmd` (the `completion SHELL` subcommand of every tool).
pub fn print_completions(mut cmd: clap::Command, shell: clap_complete::Shell) {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    write_stdout(&buf);
}

/// Writes to standard output. When the reader has gone away (`tpctl get role | head`),
/// exits quietly with status 141 (128 + SIGPIPE), as a tool killed by SIGPIPE would,
/// instead of panicking as `println!` does.
pub fn write_stdout(bytes: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` that never panics: see [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format!($($arg)*).as_bytes()) };
}

/// `println!` that never panics: see [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::write_stdout(b"\n") };
    ($($arg:tt)*) => { $crate::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes()) };
}

/// Prints the man page (roff) for `cmd` (the hidden `man` subcommand; `cargo xtask man`
/// collects them).
pub fn print_man(cmd: clap::Command) -> Result<(), CliError> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| CliError::plain(format!("writing the man page: {e}")))?;
    write_stdout(&buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_tctl() {
        assert_eq!(short_duration(3600), "1h");
        assert_eq!(short_duration(1800), "30m");
        assert_eq!(short_duration(172_799), "47h59m59s");
        assert_eq!(short_duration(8 * 3600), "8h");
        assert_eq!(short_duration(5400), "1h30m");
        assert_eq!(short_duration(0), "0s");
    }

    #[test]
    fn errors_have_a_message_line_and_a_hint_line() {
        let e = CliError::new(
            "cannot connect to 127.0.0.1:3025",
            "is tpd running? start it with `tpd start`",
        );
        assert_eq!(
            e.to_string(),
            "error: cannot connect to 127.0.0.1:3025\nhint: is tpd running? start it with `tpd start`"
        );
    }
}

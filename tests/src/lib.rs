//! Shared helpers for tp's cross-crate integration and interop tests.
//!
//! The Go interop suite lives in `tests/interop-go/` (a Go module pinned to a release of
//! `github.com/gravitational/teleport/api`); [`interop_go_dir`] finds it and
//! [`run_go`] runs one of its programs, failing loudly when Go is missing rather than
//! skipping.

pub mod cluster;
pub mod pki;

use std::path::PathBuf;
use std::process::Command;

/// The `tests/interop-go` directory.
pub fn interop_go_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop-go")
}

/// Runs `go run ./cmd/<program> <args>` in `tests/interop-go` and returns its standard
/// output. Panics with the program's standard error when it fails, and with a hint when
/// Go is not installed: the interop cases must never pass by not running.
pub fn run_go(program: &str, args: &[&str]) -> String {
    let out = Command::new("go")
        .arg("run")
        .arg(format!("./cmd/{program}"))
        .args(args)
        .current_dir(interop_go_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `go` for the interop suite ({e}); install Go (see README.md)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "go run ./cmd/{program} failed ({}):\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{program} printed non-UTF-8: {e}"))
}

//! `cargo xtask interop`: the suite that holds tp to Teleport's reference Go code.
//!
//! The Go side lives in `tests/interop-go` (a Go module pinned to one version of
//! `github.com/gravitational/teleport/api`); the Rust side is in the `tp-tests` crate.
//! Each case has a name and runs every time: a case that cannot run (no Go, no module
//! download) fails the suite instead of being skipped.

use std::fs;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, root, run_cmd};

/// The Rust test targets of the `tp-tests` crate that make up the suite, with what each
/// proves.
const CASES: &[(&str, &str)] = &[
    (
        "go_wire_bytes",
        "tp-proto encodes the shared fixtures to the same bytes as the reference Go types",
    ),
    (
        "go_creds",
        "identity files, profiles and key pairs: tp reads the reference writers' files and the reference loaders read tp's",
    ),
    (
        "go_client",
        "the reference Go client (client.New, LoadKeyPair, direct) against a tp Auth server",
    ),
];

pub(crate) fn run() -> anyhow::Result<()> {
    let root = root();
    let go_dir = root.join("tests/interop-go");
    let version = reference_version(&go_dir.join("go.mod"))?;
    eprintln!("interop: reference github.com/gravitational/teleport/api {version}");

    let out_dir = root.join("target/interop");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    // Go side: marshal the wire fixtures with the reference types.
    let wire = out_dir.join("wire.json");
    let output = Command::new("go")
        .args(["run", "./cmd/wirebytes", "fixtures/wire"])
        .current_dir(&go_dir)
        .output()
        .context("running `go` (Go is needed for the interop suite; see README.md)")?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("go run ./cmd/wirebytes failed ({})", output.status);
    }
    fs::write(&wire, &output.stdout).with_context(|| format!("writing {}", wire.display()))?;

    // Rust side: each case is a test target that reads what the Go side produced.
    for (case, what) in CASES {
        eprintln!("interop case {case}: {what}");
        run_cmd(
            cargo()
                .args([
                    "test",
                    "-p",
                    "tp-tests",
                    "--test",
                    case,
                    "--",
                    "--nocapture",
                ])
                .env("TP_WIREBYTES_JSON", &wire),
        )?;
    }
    eprintln!(
        "interop: {} case(s) passed against github.com/gravitational/teleport/api {version}",
        CASES.len()
    );
    Ok(())
}

/// The pinned reference version, read from `tests/interop-go/go.mod`.
fn reference_version(go_mod: &std::path::Path) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .map(str::trim)
        .find_map(|l| {
            l.strip_prefix("require github.com/gravitational/teleport/api ")
                .or_else(|| l.strip_prefix("github.com/gravitational/teleport/api "))
        })
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
        .with_context(|| {
            format!(
                "{} does not require github.com/gravitational/teleport/api",
                go_mod.display()
            )
        })
}

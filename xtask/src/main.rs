//! `cargo xtask`: the project's developer tasks.
//!
//! ```text
//! cargo xtask codegen [--check]   regenerate crates/tp-proto/src/gen from proto/ (or verify it)
//! cargo xtask interop             run the Go reference suite in tests/interop-go
//! cargo xtask bench               ratios against baselines measured in the same run
//! cargo xtask ci                  everything CI runs, in order
//! cargo xtask test-cluster [--keep]  a running tpd, the walkthrough and the suites against it
//! cargo xtask man                 man pages into target/man
//! ```

mod cluster;
mod codegen;
mod interop;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["codegen"] => codegen::run(codegen::Mode::Write),
        ["codegen", "--check"] => codegen::run(codegen::Mode::Check),
        ["interop"] => interop::run(),
        ["bench"] => run_cmd(cargo().args(["run", "--release", "-p", "tp-bench"])),
        ["ci"] => ci(),
        ["test-cluster"] => cluster::test_cluster(false),
        ["test-cluster", "--keep"] => cluster::test_cluster(true),
        ["man"] => cluster::man(),
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{}", USAGE);
            Ok(())
        }
        other => bail!("unknown xtask arguments {other:?}\n\n{USAGE}"),
    }
}

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  codegen [--check]  regenerate crates/tp-proto/src/gen from proto/; --check fails if stale
  interop            run the Go reference-client suite in tests/interop-go
  bench              benchmarks that print ratios against same-run baselines (release build)
  ci                 fmt, clippy, codegen --check, cargo deny, tests, interop (what CI runs)
  test-cluster [--keep]  start tpd, run the walkthrough and the suites against it, print a table
  man                man pages for tpd, tpctl and tpsh into target/man
";

/// The workspace root (the parent of this crate's manifest directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        // CARGO_MANIFEST_DIR is `<root>/xtask`, which always has a parent.
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the workspace root, echoing it, and fails if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(root());
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[allow(
    clippy::disallowed_methods,
    reason = "xtask is a tool: it runs the cargo that runs it"
)]
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ci() -> anyhow::Result<()> {
    let step = |name: &str| eprintln!("\n==> {name}");

    step("format");
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;

    step("clippy");
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("layering");
    layering()?;

    step("codegen --check");
    codegen::run(codegen::Mode::Check)?;

    step("cargo deny");
    ensure_cargo_deny()?;
    // The advisory database lives on a host these machines cannot reach; the other
    // checks are fully offline.
    run_cmd(cargo().args(["deny", "check", "bans", "licenses", "sources"]))?;

    step("docs");
    run_cmd(
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;

    step("tests (incl. doctests)");
    run_cmd(cargo().args(["test", "--workspace", "--all-features"]))?;

    step("interop");
    interop::run()?;

    eprintln!("\nci: all steps passed");
    Ok(())
}

/// The architecture invariants that `cargo tree` can check (docs/ARCHITECTURE.md):
/// the SDK's lower crates pull in no RPC stack and no server crate, and no client crate
/// depends on the cluster.
const LAYERING: &[(&str, &[&str])] = &[
    (
        "tp-creds",
        &[
            "tonic",
            "prost",
            "tp-proto",
            "tp-transport",
            "tp-client",
            "tp-auth",
            "tp-proxy",
            "tp-backend",
            "tp-ssh",
        ],
    ),
    (
        "tp-ssh",
        &[
            "tonic",
            "prost",
            "tp-creds",
            "tp-proto",
            "tp-transport",
            "tp-client",
            "tp-auth",
            "tp-proxy",
            "tp-backend",
        ],
    ),
    (
        "tp-transport",
        &[
            "tonic",
            "prost",
            "tp-proto",
            "tp-client",
            "tp-auth",
            "tp-proxy",
            "tp-backend",
        ],
    ),
    (
        "tp-backend",
        &[
            "tonic",
            "tp-proto",
            "tp-creds",
            "tp-ssh",
            "tp-transport",
            "tp-client",
            "tp-auth",
            "tp-proxy",
        ],
    ),
    (
        "tp-proto",
        &[
            "tp-creds",
            "tp-ssh",
            "tp-transport",
            "tp-client",
            "tp-auth",
            "tp-proxy",
            "tp-backend",
        ],
    ),
    ("tp-client", &["tp-auth", "tp-proxy", "tp-backend"]),
    ("tp-auth", &["tp-transport", "tp-client", "tp-proxy"]),
    ("tp-proxy", &["tp-auth", "tp-backend"]),
];

fn layering() -> anyhow::Result<()> {
    for (krate, forbidden) in LAYERING {
        let out = cargo()
            .args([
                "tree",
                "-p",
                krate,
                "-e",
                "normal,build",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .current_dir(root())
            .output()
            .with_context(|| format!("running cargo tree -p {krate}"))?;
        if !out.status.success() {
            bail!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let names: std::collections::BTreeSet<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let bad: Vec<&&str> = forbidden.iter().filter(|f| names.contains(**f)).collect();
        if !bad.is_empty() {
            bail!("{krate} must not depend on {bad:?} (see docs/ARCHITECTURE.md, invariants)");
        }
        eprintln!("layering: {krate} is clear of {}", forbidden.join(", "));
    }
    Ok(())
}

fn ensure_cargo_deny() -> anyhow::Result<()> {
    let have = cargo()
        .args(["deny", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("cargo-deny is missing; installing it (a few minutes, once per machine)");
        run_cmd(cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    Ok(())
}

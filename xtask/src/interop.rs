//! `cargo xtask interop`: runs the Go reference suite in `tests/interop-go`.

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::bail!("interop suite not wired yet")
}

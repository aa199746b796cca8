//! `tpctl`: see the `tp-cli` crate docs.

fn main() -> std::process::ExitCode {
    eprintln!("tpctl: not yet implemented; see the tp-cli issue");
    std::process::ExitCode::from(2)
}

//! `tpsh`: see the `tp-cli` crate docs.

fn main() -> std::process::ExitCode {
    eprintln!("tpsh: not yet implemented; see the tp-cli issue");
    std::process::ExitCode::from(2)
}

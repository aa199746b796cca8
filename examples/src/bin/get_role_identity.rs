//! Reads a role with an identity file (`tctl auth sign --format=file`, `tsh login --out`).
//!
//! ```sh
//! cargo run -p tp-examples --bin get-role-identity -- --identity ./identity --addr localhost:3025
//! ```

use std::process::ExitCode;

use tp_creds::IdentityFile;
use tp_examples::{Args, Parsed, get_role_and_print, run};

const USAGE: &str = "get-role-identity --identity FILE --addr HOST:PORT [--role NAME]";

fn main() -> ExitCode {
    let args = match Args::parse(
        std::env::args().skip(1),
        &["identity", "addr", "role"],
        USAGE,
    ) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    run(async move {
        let creds = IdentityFile::from_path(args.required("identity")?);
        get_role_and_print(&creds, Some(args.required("addr")?), args.role()).await
    })
}

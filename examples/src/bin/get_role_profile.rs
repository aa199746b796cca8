//! Reads a role with a `tsh` profile: the current one in `$TELEPORT_HOME` or `~/.tsh`,
//! or the one named. Without `--addr` it goes through the profile's proxy.
//!
//! ```sh
//! cargo run -p tp-examples --bin get-role-profile -- --dir ~/.tsh --profile proxy.example.com
//! ```

use std::process::ExitCode;

use tp_creds::Profile;
use tp_examples::{Args, Parsed, get_role_and_print, run};

const USAGE: &str =
    "get-role-profile [--dir TSH_DIR] [--profile NAME] [--addr HOST:PORT] [--role NAME]";

fn main() -> ExitCode {
    let args = match Args::parse(
        std::env::args().skip(1),
        &["dir", "profile", "addr", "role"],
        USAGE,
    ) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    run(async move {
        let creds = match args.get("dir") {
            Some(dir) => Profile::new(dir, args.get("profile")),
            None => Profile::from_env(args.get("profile")),
        };
        get_role_and_print(&creds, args.get("addr"), args.role()).await
    })
}

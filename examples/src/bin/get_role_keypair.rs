//! Reads a role with a certificate, its key and the CAs to trust, as separate PEM files
//! (`tctl auth sign --format=tls` writes `<out>.crt`, `<out>.key`, `<out>.cas`).
//!
//! ```sh
//! cargo run -p tp-examples --bin get-role-keypair -- --cert out.crt --key out.key --cas out.cas --addr localhost:3025
//! ```

use std::process::ExitCode;

use tp_creds::KeyPair;
use tp_examples::{Args, Parsed, get_role_and_print, run};

const USAGE: &str =
    "get-role-keypair --cert FILE --key FILE --cas FILE --addr HOST:PORT [--role NAME]";

fn main() -> ExitCode {
    let args = match Args::parse(
        std::env::args().skip(1),
        &["cert", "key", "cas", "addr", "role"],
        USAGE,
    ) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    run(async move {
        let creds = KeyPair::new(
            args.required("cert")?,
            args.required("key")?,
            args.required("cas")?,
        );
        get_role_and_print(&creds, Some(args.required("addr")?), args.role()).await
    })
}

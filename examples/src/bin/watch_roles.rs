//! Prints role changes as they happen: `INIT` when the watch starts (and again after a
//! reconnect: re-read the state then), `PUT <role>`, `DELETE <role>`. Stops after
//! `--count` changes, or on Ctrl-C.
//!
//! ```sh
//! cargo run -p tp-examples --bin watch-roles -- --identity ./identity --addr localhost:3025
//! ```

use std::process::ExitCode;

use futures_util::StreamExt;
use tp_client::proto::event::Resource as R;
use tp_client::proto::{Operation, Watch};
use tp_client::types::WatchKind;
use tp_creds::IdentityFile;
use tp_examples::{Args, Failure, Parsed, connect, failure, run};

const USAGE: &str = "watch-roles --identity FILE --addr HOST:PORT [--count N]";

fn main() -> ExitCode {
    let args = match Args::parse(
        std::env::args().skip(1),
        &["identity", "addr", "count"],
        USAGE,
    ) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    run(async move {
        let count = match args.get("count") {
            None => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                Failure::new(
                    format!("--count {n:?} is not a number"),
                    format!("usage: {USAGE}"),
                )
            })?),
        };
        let creds = IdentityFile::from_path(args.required("identity")?);
        let client = connect(&creds, Some(args.required("addr")?)).await?;
        let watch = Watch {
            kinds: vec![WatchKind {
                kind: "role".into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        };
        let mut events = client
            .watch_events(watch)
            .await
            .map_err(|e| failure("cannot watch roles", &e))?;
        let mut seen = 0;
        loop {
            let ev = tokio::select! {
                ev = events.next() => ev,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let ev = match ev {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => return Err(failure("the watch ended", &e)),
                None => return Ok(()),
            };
            let name = match ev.resource {
                Some(R::Role(r)) => r.metadata.map(|m| m.name).unwrap_or_default(),
                Some(R::ResourceHeader(h)) => h.metadata.map(|m| m.name).unwrap_or_default(),
                _ => String::new(),
            };
            match Operation::try_from(ev.r#type) {
                Ok(Operation::Init) => println!("INIT"),
                Ok(Operation::Put) => println!("PUT {name}"),
                Ok(Operation::Delete) => println!("DELETE {name}"),
                Err(_) => println!("event {} {name}", ev.r#type),
            }
            if !matches!(Operation::try_from(ev.r#type), Ok(Operation::Init)) {
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
    })
}

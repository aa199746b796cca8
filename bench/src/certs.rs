//! GenerateUserCerts against the raw signing rate of the same key types (one ECDSA P-256
//! and one Ed25519 signature per request), each counted per CPU-second of the process
//! that does the work.
//!
//! The calls come from a load generator in a child process, and only the CPU time of
//! the process serving them is counted: on a 2-core machine a load generator in the same
//! process would take a third of the cores from the server, and the figure would
//! measure the client as much as the Auth server. The raw signatures run as the server
//! makes them, inline on the runtime's workers, and are counted the same way. The calls
//! per second through the whole system (client and server on the same cores) are
//! printed beside the ratio.
//!
//! The two are measured in alternation, [`ROUNDS`] windows each, and the ratio is the
//! median of the rounds' ratios: a shared machine's speed drifts over seconds, and a
//! ratio of windows taken far apart would measure the drift.

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tp_client::{Client, Config};
use tp_proto::proto::UserCertsRequest;
use tp_tests::cluster::TestCluster;

use crate::tunnel::Child;

/// The child process role: `__certs-load <identity file> <auth address>`.
pub(crate) const LOAD: &str = "__certs-load";

/// The user the load generator renews certificates for (itself).
const USER: &str = "certs-bench";

/// Work done in a measured window: how many operations, in what wall time and in how
/// much of this process's CPU time.
#[derive(Debug, Clone, Copy)]
struct Window {
    ops: u64,
    wall: Duration,
    cpu: Duration,
}

impl Window {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }

    fn per_cpu_second(&self) -> f64 {
        self.ops as f64 / self.cpu.as_secs_f64()
    }
}

/// This process's user + system CPU time so far (every thread, live or exited), from
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux's fixed `USER_HZ`).
fn process_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name, which ends at the last ')': state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/self/stat: no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("/proc/self/stat: too few fields")?
            .parse()
            .context("/proc/self/stat: CPU time is not a number")
    };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Alternating windows of each kind.
const ROUNDS: usize = 5;

/// One window's length.
const WINDOW: Duration = Duration::from_millis(1500);

/// GenerateUserCerts/CPU-second of the serving process must be at least this share of
/// raw signatures/CPU-second.
const GOAL: f64 = 0.5;

/// How the measured server stores its state, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// SQLite, as tpd runs: the goal applies.
    Sqlite,
    /// The in-memory store: printed for comparison, to show what storage costs.
    Memory,
}

/// GenerateUserCerts through `cluster` (which holds role `api-role`) against raw signing;
/// whether the ratio reaches the goal (which only SQLite's figure is held to).
pub(crate) async fn certs_vs_signing(
    cluster: &TestCluster,
    storage: Storage,
) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let identity = dir.path().join("identity");
    cluster
        .identity_bundle(USER, &["api-role"], 3600)
        .await
        .write(tp_creds::Format::File, &identity)?;
    let mut load = Child::spawn(
        LOAD,
        &[identity.display().to_string(), cluster.addr.to_string()],
    )?;
    // Connected and warmed up.
    load.ask("", "ready")?;
    let raw_op = raw_signing()?;
    for _ in 0..50 {
        raw_op().await?;
    }
    let (mut served, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        served.push(served_window(&mut load)?);
        raw.push(raw_window(raw_op.clone()).await?);
    }
    drop(load);
    let mut ratios: Vec<f64> = served
        .iter()
        .zip(&raw)
        .map(|(s, r)| s.per_cpu_second() / r.per_cpu_second())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let total = |w: &[Window]| Window {
        ops: w.iter().map(|w| w.ops).sum(),
        wall: w.iter().map(|w| w.wall).sum(),
        cpu: w.iter().map(|w| w.cpu).sum(),
    };
    let (served, raw) = (total(&served), total(&raw));
    let meets = ratio >= GOAL;
    let (store, verdict) = match storage {
        Storage::Sqlite => (
            "SQLite",
            format!("{} the {GOAL}x goal", if meets { "meets" } else { "BELOW" }),
        ),
        Storage::Memory => ("in-memory store", "for comparison, no goal".to_string()),
    };
    println!(
        "GenerateUserCerts ({store}): tp {:.0} per CPU-second of the Auth server's process ({:.0}/s \
         end to end, load generator in its own process on the same cores), raw ECDSA P-256 + \
         Ed25519 signing {:.0} pairs per CPU-second ({:.0}/s), ratio {ratio:.2}x, median of \
         {ROUNDS} alternating rounds ({:.2}-{:.2}) ({verdict})",
        served.per_cpu_second(),
        served.per_second(),
        raw.per_cpu_second(),
        raw.per_second(),
        ratios[0],
        ratios[ratios.len() - 1],
    );
    Ok(meets)
}

/// One window of the load generator's calls, with this (the serving) process's CPU
/// time over it.
fn served_window(load: &mut Child) -> anyhow::Result<Window> {
    let cpu = process_cpu()?;
    let [ops, wall_us] = load.number("go", "done")?[..] else {
        anyhow::bail!("load generator: expected `done <calls> <microseconds>`");
    };
    Ok(Window {
        ops,
        wall: Duration::from_micros(wall_us),
        cpu: process_cpu()? - cpu,
    })
}

type RawOp = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync,
>;

/// One ECDSA P-256 and one Ed25519 signature of a certificate-sized message.
fn raw_signing() -> anyhow::Result<RawOp> {
    let rng = ring::rand::SystemRandom::new();
    let ecdsa_pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .map_err(|_| anyhow::anyhow!("ECDSA key generation failed"))?;
    let ecdsa = Arc::new(
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            ecdsa_pkcs8.as_ref(),
            &rng,
        )
        .map_err(|_| anyhow::anyhow!("ECDSA key rejected"))?,
    );
    let ed_pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
    let ed = Arc::new(
        ring::signature::Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("Ed25519 key rejected"))?,
    );
    let tbs: Arc<[u8]> = vec![0x5au8; 900].into();
    Ok(Arc::new(move || {
        let (ecdsa, ed, tbs) = (ecdsa.clone(), ed.clone(), tbs.clone());
        Box::pin(async move {
            let rng = ring::rand::SystemRandom::new();
            ecdsa
                .sign(&rng, &tbs)
                .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?;
            let _ = ed.sign(&tbs);
            // Let the other callers run, as a server's handler does between requests.
            tokio::task::yield_now().await;
            Ok(())
        })
    }))
}

/// One window of raw signing by `IN_FLIGHT` tasks on this runtime's workers, as the
/// server signs: inline.
async fn raw_window(op: RawOp) -> anyhow::Result<Window> {
    let cpu = process_cpu()?;
    let start = Instant::now();
    let ops = crate::measure_for(crate::IN_FLIGHT, WINDOW, move || op()).await?;
    Ok(Window {
        ops,
        wall: start.elapsed(),
        cpu: process_cpu()? - cpu,
    })
}

/// `__certs-load <identity file> <auth address>`: connects as the identity's user,
/// prints `ready` once warmed up, and on each `go` renews its own certificates with
/// `IN_FLIGHT` callers for one window, then prints `done <calls> <microseconds>`; exits
/// at EOF.
pub(crate) fn load(args: &[String]) -> anyhow::Result<()> {
    let [identity, addr] = args else {
        anyhow::bail!("{LOAD} takes <identity file> <auth address>");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = Client::connect(Config::new().credentials(
            &tp_creds::IdentityFile::from_path(identity),
            &[addr.as_str()],
        )?)
        .await?;
        let tls_key = rcgen::KeyPair::generate()?;
        let ssh_key = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )?;
        let req = UserCertsRequest {
            username: USER.into(),
            tls_public_key: tls_key.public_key_pem().into_bytes(),
            ssh_public_key: ssh_key.public_key().to_openssh()?.into_bytes(),
            ..Default::default()
        };
        let op = move || {
            let (c, req) = (client.clone(), req.clone());
            async move {
                let certs = c.generate_user_certs(req).await?;
                anyhow::ensure!(
                    !certs.tls.is_empty() && !certs.ssh.is_empty(),
                    "GenerateUserCerts returned no certificate"
                );
                Ok(())
            }
        };
        for _ in 0..50 {
            op().await?;
        }
        println!("ready");
        std::io::stdout().flush()?;
        // A window per `go`, until the parent closes stdin.
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            anyhow::ensure!(line.trim() == "go", "expected `go`, read {line:?}");
            let start = Instant::now();
            let calls = crate::measure_for(crate::IN_FLIGHT, WINDOW, op.clone()).await?;
            println!("done {calls} {}", start.elapsed().as_micros());
            std::io::stdout().flush()?;
        }
        anyhow::Ok(())
    })
}

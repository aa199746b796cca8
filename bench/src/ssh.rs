//! tp-ssh against OpenSSH on the same machine in the same run (issue 5):
//!
//! - **Bulk throughput**: 256 MiB through a `direct-tcpip` channel, tp-ssh client →
//!   tp-ssh server → a loopback sink, against `ssh -W` → `sshd` → the same sink, with the
//!   same cipher on both sides (aes128-gcm@openssh.com, then chacha20-poly1305@openssh.com),
//!   the same Ed25519 host certificate and user certificate. The sink times from accepting
//!   the forwarded connection to its EOF, so neither side's handshake nor `ssh`'s process
//!   start is counted. Each side runs twice, alternating, and the better run counts (the
//!   two cores are shared). Goal ≥ 1.0×.
//! - **Handshakes/s** (TCP connect, full KEX, certificate auth, disconnect): the same
//!   tp-ssh client in a tight loop, 4 in flight, against the tp-ssh server and against
//!   sshd. Timing `ssh ... true` in a loop would mostly measure process start-up of the
//!   client, so the client is held fixed and only the server differs; sshd's per-connection
//!   fork is part of what it costs, as it is in production. No goal is set.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tp_ssh::CipherAlg;

use crate::openssh::{Pki, Sshd};

/// Bytes per bulk transfer.
pub(crate) const BULK: u64 = 256 << 20;
/// Runs per side and cipher; the best counts.
const RUNS: usize = 5;
/// Connections in flight in the handshake loops (below any sshd start-up throttling).
pub(crate) const HANDSHAKES_IN_FLIGHT: usize = 4;

/// What the sink saw of one connection: bytes, and the time from accept to EOF.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub bytes: u64,
    pub took: Duration,
}

impl Received {
    pub(crate) fn mb_per_s(self) -> f64 {
        self.bytes as f64 / self.took.as_secs_f64() / 1e6
    }
}

/// A loopback sink: each connection is read to EOF, answered with the byte count
/// (8 bytes, big-endian) and closed. With `report`, what it saw goes to `results`.
pub(crate) struct Sink {
    pub port: u16,
    pub results: mpsc::UnboundedReceiver<Received>,
}

impl Sink {
    pub(crate) async fn start(report: bool) -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let (tx, results) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    let mut buf = vec![0u8; if report { 256 * 1024 } else { 512 }];
                    let mut bytes = 0u64;
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => bytes += n as u64,
                            Err(_) => return,
                        }
                    }
                    let took = start.elapsed();
                    if report {
                        let _ = tx.send(Received { bytes, took });
                    }
                    let _ = s.write_all(&bytes.to_be_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(Self { port, results })
    }

    /// The next reported connection.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Received> {
        tokio::time::timeout(Duration::from_secs(300), self.results.recv())
            .await
            .context("the sink saw no transfer within 300 s")?
            .context("the sink stopped")
    }
}

/// Writes `total` bytes and ends the stream, while reading the sink's 8-byte count back;
/// checks it.
pub(crate) async fn push<R, W>(mut r: R, mut w: W, total: u64) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let write = async move {
        // Content does not matter: neither side compresses.
        let block = vec![0x5au8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = block
                .len()
                .min(usize::try_from(total - sent).unwrap_or(usize::MAX));
            w.write_all(&block[..n]).await?;
            sent += n as u64;
        }
        w.shutdown().await?;
        // Dropping the writer closes a pipe (ssh's stdin) as well.
        drop(w);
        anyhow::Ok(())
    };
    let read = async move {
        let mut count = [0u8; 8];
        r.read_exact(&mut count).await?;
        anyhow::Ok(u64::from_be_bytes(count))
    };
    let ((), got) = tokio::try_join!(write, read)?;
    ensure!(got == total, "the sink received {got} of {total} bytes");
    Ok(())
}

/// A tp-ssh server on loopback that forwards `direct-tcpip` channels (as sshd does for
/// `ssh -W`); returns its port.
pub(crate) async fn tp_ssh_server(
    cfg: std::sync::Arc<tp_ssh::ServerConfig>,
) -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = l.accept().await {
            let _ = tcp.set_nodelay(true);
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let Ok((session, _)) = tp_ssh::Server::accept(tcp, cfg, Some(peer.ip())).await
                else {
                    return;
                };
                while let Some(inc) = session.next_channel().await {
                    let Some((host, port)) = inc
                        .direct_tcpip_target()
                        .filter(|_| inc.kind() == "direct-tcpip")
                    else {
                        let _ = inc.reject(1, "only direct-tcpip");
                        continue;
                    };
                    tokio::spawn(async move {
                        match TcpStream::connect((host.as_str(), port)).await {
                            Ok(mut t) => {
                                let _ = t.set_nodelay(true);
                                if let Ok(mut ch) = inc.accept() {
                                    // What a tp-ssh server forwards with (the reverse
                                    // tunnel does too).
                                    let _ = tp_ssh::splice::splice(&mut ch, &mut t).await;
                                }
                            }
                            Err(_) => {
                                let _ = inc.reject(2, "connect failed");
                            }
                        }
                    });
                }
            });
        }
    });
    Ok(port)
}

/// A tp-ssh client session to `port` (TCP with `TCP_NODELAY`).
pub(crate) async fn tp_connect(
    port: u16,
    cfg: std::sync::Arc<tp_ssh::ClientConfig>,
) -> anyhow::Result<tp_ssh::Session> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tp_ssh::Client::connect(tcp, cfg).await?)
}

/// One tp-ssh transfer of `BULK` bytes through a direct-tcpip channel to the sink.
async fn tp_bulk(
    pki: &Pki,
    server: u16,
    sink: &mut Sink,
    cipher: CipherAlg,
) -> anyhow::Result<Received> {
    let session = tp_connect(server, pki.tp_client(cipher)?).await?;
    let ch = session
        .open_direct_tcpip("127.0.0.1", sink.port, "127.0.0.1", 1)
        .await?;
    let (r, w) = tokio::io::split(ch);
    push(r, w, BULK).await?;
    session.disconnect();
    sink.next().await
}

/// One `ssh -W` transfer of `BULK` bytes through sshd to the sink.
pub(crate) async fn openssh_bulk(
    pki: &Pki,
    sshd: &Sshd,
    sink: &mut Sink,
    cipher: &str,
) -> anyhow::Result<Received> {
    let mut child = pki.ssh_w(sshd.port, sink.port, cipher)?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("ssh without piped stdin/stdout");
    };
    let pushed = tokio::time::timeout(Duration::from_secs(300), push(stdout, stdin, BULK)).await;
    let out = child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match pushed {
        Err(_) => bail!("ssh -W did not finish within 300 s: {stderr}"),
        Ok(Err(e)) => bail!("ssh -W transfer failed: {e:#}: {stderr}"),
        Ok(Ok(())) => {}
    }
    ensure!(out.status.success(), "ssh -W failed: {stderr}");
    sink.next().await
}

/// Bulk results for one cipher: (tp-ssh best, OpenSSH best).
pub(crate) struct Bulk {
    pub tp: Received,
    pub openssh: Received,
}

/// Runs the bulk comparison for `cipher`, alternating the two sides; best of `RUNS`.
pub(crate) async fn bulk(
    pki: &Pki,
    sshd: &Sshd,
    tp_server: u16,
    sink: &mut Sink,
    cipher: CipherAlg,
) -> anyhow::Result<Bulk> {
    let best = |a: Option<Received>, b: Received| match a {
        Some(a) if a.mb_per_s() >= b.mb_per_s() => Some(a),
        _ => Some(b),
    };
    let (mut tp, mut os) = (None, None);
    for _ in 0..RUNS {
        tp = best(tp, tp_bulk(pki, tp_server, sink, cipher).await?);
        os = best(os, openssh_bulk(pki, sshd, sink, cipher.name()).await?);
    }
    match (tp, os) {
        (Some(tp), Some(openssh)) => Ok(Bulk { tp, openssh }),
        _ => bail!("no runs"),
    }
}

/// Handshakes/s of the tp-ssh client against the server at `port`.
pub(crate) async fn handshakes(port: u16, pki: &Pki) -> anyhow::Result<f64> {
    let cfg = pki.tp_client(CipherAlg::Aes128Gcm)?;
    crate::rate_n(HANDSHAKES_IN_FLIGHT, move || {
        let cfg = cfg.clone();
        async move {
            let session = tp_connect(port, cfg).await?;
            session.disconnect();
            let _ = session.closed().await;
            Ok(())
        }
    })
    .await
}

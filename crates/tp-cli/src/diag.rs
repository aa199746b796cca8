//! `tpd --diag-addr`: `/healthz`, `/readyz` and Prometheus `/metrics` on a plain-HTTP
//! listener meant for loopback or a private network.
//!
//! Metrics: RPCs by method and gRPC code (reported by the Auth server's observer hook), accepted
//! Auth connections, certificates issued, and the process start time. Counters are kept
//! here, in memory, with no metrics crate: the text format is small.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The counters `tpd` exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<(String, &'static str), u64>>,
    connections: AtomicU64,
    ready: AtomicBool,
    started: AtomicU64,
    tunnel: Mutex<Option<Arc<tp_transport::tunnel::TunnelStats>>>,
}

/// The methods that issue certificates.
const ISSUING: &[&str] = &[
    "/proto.AuthService/GenerateUserCerts",
    "/tp.login.v1.LoginService/AuthenticateSSHUser",
];

fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Other",
    }
}

impl Metrics {
    /// Fresh counters, with the start time set to now.
    pub fn new() -> Arc<Self> {
        let m = Self::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        m.started.store(now, Ordering::Relaxed);
        Arc::new(m)
    }

    /// Counts one RPC to `method` that ended with gRPC `code` (its number as text).
    pub fn rpc(&self, method: &str, code: &str) {
        let mut map = self.rpcs.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry((method.to_string(), code_name(code)))
            .or_default() += 1;
    }

    /// Counts one accepted connection to the Auth server.
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the cluster ready (both listeners serving).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the cluster is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reports the reverse tunnel's counters from `stats`.
    pub fn set_tunnel(&self, stats: Arc<tp_transport::tunnel::TunnelStats>) {
        *self.tunnel.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rpcs = self
            .rpcs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::new();
        out.push_str("# HELP tp_rpc_total gRPC calls to the Auth server by method and code.\n# TYPE tp_rpc_total counter\n");
        for ((method, code), n) in &rpcs {
            out.push_str(&format!(
                "tp_rpc_total{{method=\"{method}\",code=\"{code}\"}} {n}\n"
            ));
        }
        let issued: u64 = rpcs
            .iter()
            .filter(|((m, c), _)| *c == "OK" && ISSUING.contains(&m.as_str()))
            .map(|(_, n)| n)
            .sum();
        out.push_str("# HELP tp_certificates_issued_total Successful certificate issuances.\n# TYPE tp_certificates_issued_total counter\n");
        out.push_str(&format!("tp_certificates_issued_total {issued}\n"));
        out.push_str("# HELP tp_auth_connections_total Connections accepted by the Auth server.\n# TYPE tp_auth_connections_total counter\n");
        out.push_str(&format!(
            "tp_auth_connections_total {}\n",
            self.connections.load(Ordering::Relaxed)
        ));
        let tunnel = self
            .tunnel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(t) = tunnel {
            out.push_str("# HELP tp_tunnel_connections_total Reverse-tunnel connections that authenticated.\n# TYPE tp_tunnel_connections_total counter\n");
            out.push_str(&format!(
                "tp_tunnel_connections_total {}\n",
                t.connections()
            ));
            out.push_str("# HELP tp_tunnel_bytes_total Bytes spliced through the reverse tunnel, by direction.\n# TYPE tp_tunnel_bytes_total counter\n");
            out.push_str(&format!(
                "tp_tunnel_bytes_total{{direction=\"to_auth\"}} {}\n",
                t.bytes_to_auth()
            ));
            out.push_str(&format!(
                "tp_tunnel_bytes_total{{direction=\"from_auth\"}} {}\n",
                t.bytes_from_auth()
            ));
        }
        out.push_str("# HELP tp_start_time_seconds When tpd started (Unix time).\n# TYPE tp_start_time_seconds gauge\n");
        out.push_str(&format!(
            "tp_start_time_seconds {}\n",
            self.started.load(Ordering::Relaxed)
        ));
        out
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::http::StatusCode;
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let ready = metrics.clone();
    let text = metrics.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = text.clone();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text.render()) }
            }),
        );
    let _ = axum::serve(listener, app).await;
}

/// Binds the diagnostics listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::CliError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::CliError::new(
            format!("cannot listen on {addr} for diagnostics: {e}"),
            "choose another --diag-addr",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text() {
        let m = Metrics::new();
        m.rpc("/proto.AuthService/GenerateUserCerts", "0");
        m.rpc("/proto.AuthService/GenerateUserCerts", "7");
        m.rpc("/proto.AuthService/GetRole", "5");
        m.connection();
        let t = m.render();
        assert!(t.contains("tp_rpc_total{method=\"/proto.AuthService/GenerateUserCerts\",code=\"PermissionDenied\"} 1"), "{t}");
        assert!(
            t.contains("tp_rpc_total{method=\"/proto.AuthService/GetRole\",code=\"NotFound\"} 1"),
            "{t}"
        );
        assert!(t.contains("tp_certificates_issued_total 1\n"), "{t}");
        assert!(t.contains("tp_auth_connections_total 1\n"), "{t}");
    }
}

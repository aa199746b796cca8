//! The reverse-tunnel port (3024 by default): SSH from users and tools that reach the
//! Auth server through the proxy. The protocol halves live in `tp_transport::tunnel`;
//! this is the listener around them.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tp_transport::tunnel::TunnelServer;

/// The most tunnel connections served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 4096;

/// Accepts tunnel connections until the listener fails; each runs on its own task.
pub async fn serve(listener: TcpListener, server: TunnelServer) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve(tcp, Some(peer.ip())).await {
                tracing::debug!(%peer, error = %e, "tunnel connection ended");
            }
            drop(permit);
        });
    }
}

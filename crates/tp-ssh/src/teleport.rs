//! Teleport's tunnel transport profile (wire-client spec §8): the `teleport-transport`
//! channel and its `teleport-transport-dial` request, for both sides.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::driver::{Channel, IncomingChannel, Session};
use crate::error::Error;

/// The channel type Teleport opens to reach the Auth server through the Proxy.
pub const TRANSPORT_CHANNEL: &str = "teleport-transport";
/// The channel request naming the dial target (raw JSON payload, want-reply).
pub const DIAL_REQUEST: &str = "teleport-transport-dial";
/// The special address of the cluster's Auth server.
pub const REMOTE_AUTH_SERVER: &str = "@remote-auth-server";
/// How long the server waits for the dial request after accepting the channel.
pub const DIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_conn_type() -> String {
    "node".into()
}

/// Teleport's `DialReq`, sent as the raw JSON payload of `teleport-transport-dial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// The target address (`@remote-auth-server` for the Auth server).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// A target server's ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_id: String,
    /// The connection type; Teleport always sends it (default `node`).
    #[serde(default = "default_conn_type")]
    pub conn_type: String,
    /// The original client's source address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_src_addr: String,
    /// The original client's destination address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_dst_addr: String,
    /// Whether the target is an agentless node.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_agentless_node: bool,
}

impl DialRequest {
    /// The request for the Auth server: `{"address":"@remote-auth-server","conn_type":"node"}`.
    pub fn auth_server() -> Self {
        Self {
            address: REMOTE_AUTH_SERVER.into(),
            server_id: String::new(),
            conn_type: default_conn_type(),
            client_src_addr: String::new(),
            client_dst_addr: String::new(),
            is_agentless_node: false,
        }
    }
}

/// Client side: opens `teleport-transport`, sends the dial request and returns the
/// channel as the byte stream to the target. On refusal the error is the server's stderr
/// text, or `failed connecting to <address> []` when it wrote none (as Teleport's client).
pub async fn dial_transport(session: &Session, request: &DialRequest) -> Result<Channel, Error> {
    let channel = session.open_channel(TRANSPORT_CHANNEL, &[]).await?;
    let json = serde_json::to_vec(request).map_err(|e| Error::Dial(e.to_string()))?;
    if channel.request(DIAL_REQUEST, true, &json).await? {
        return Ok(channel);
    }
    // The server writes stderr before it replies, so it is already here.
    let text = String::from_utf8_lossy(&channel.stderr()).trim().to_owned();
    let _ = channel.close();
    Err(Error::Dial(if text.is_empty() {
        format!("failed connecting to {} []", request.address)
    } else {
        text
    }))
}

/// Server side: answers one incoming channel. Anything but `teleport-transport` is
/// refused. For a transport channel the first request must be `teleport-transport-dial`;
/// `dial` is called with it. On `Err(text)` the text goes to stderr and the request is
/// answered `false`; on `Ok(stream)` the request is answered `true` and bytes are spliced
/// both ways until either side ends.
pub async fn serve_transport<F, Fut, S>(incoming: IncomingChannel, dial: F) -> Result<(), Error>
where
    F: FnOnce(DialRequest) -> Fut,
    Fut: Future<Output = Result<S, String>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    if incoming.kind() != TRANSPORT_CHANNEL {
        let text = if incoming.kind() == "session" {
            "Cannot open new SSH session on reverse tunnel. Are you connecting to the right port?"
        } else {
            "unknown channel type"
        };
        return incoming.reject(2, text);
    }
    let mut channel = incoming.accept()?;
    let request = tokio::time::timeout(DIAL_REQUEST_TIMEOUT, channel.next_request())
        .await
        .map_err(|_| Error::Timeout("no dial request".into()))?
        .ok_or(Error::Closed)?;
    let refuse = |channel: Channel, text: String| async move {
        let _ = channel.write_stderr(text.as_bytes()).await;
        let _ = channel.reply(false);
        let _ = channel.close();
        Err(Error::Dial(text))
    };
    if request.name != DIAL_REQUEST || !request.want_reply {
        if request.want_reply {
            let _ = channel.reply(false);
        }
        return refuse(channel, "internal server error".into()).await;
    }
    let Ok(dial_request) = serde_json::from_slice::<DialRequest>(&request.payload) else {
        return refuse(channel, "internal server error".into()).await;
    };
    match dial(dial_request).await {
        Err(text) => refuse(channel, text).await,
        Ok(mut stream) => {
            channel.reply(true)?;
            let r = crate::splice::splice(&mut channel, &mut stream).await;
            let _ = channel.close();
            r.map(|_| ()).map_err(Error::from)
        }
    }
}

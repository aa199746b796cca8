//! A small HTTPS/1.1 client for the proxy's web API (`/webapi/ping`, `/webapi/find`,
//! `/v1/webapi/ssh/certs`): one request per connection, bounded response size, JSON in
//! and out. Enough for discovery and login; not a general HTTP client.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::addr::HostPort;
use crate::dial::{self, DialError, Peer};
use crate::discovery::{self, DiscoveryError, PingResponse};
use crate::proxy_env::ProxyMatcher;

/// The largest response body read (discovery and login answers are a few KiB).
pub const MAX_RESPONSE: usize = 1 << 20;

/// Why a web request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The connection or TLS handshake failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Reading or writing the request failed, or it timed out.
    #[error("{url}: {message}")]
    Io {
        /// The request URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The response is not HTTP/1.1 as expected.
    #[error("{url}: malformed HTTP response: {message}")]
    Malformed {
        /// The request URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

/// Why [`WebClient::find`] found no proxy settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindError {
    /// The request failed: no connection, no TLS, no HTTP answer.
    #[error("GET {url}: {}", match source.as_ref() {
        WebError::Dial(d) => d.to_string(),
        WebError::Io { message, .. } => message.clone(),
        WebError::Malformed { message, .. } => format!("malformed HTTP response: {message}"),
    })]
    Request {
        /// The URL asked (`/webapi/find` or `/webapi/ping`).
        url: String,
        /// Why.
        source: Box<WebError>,
    },
    /// The answer is not a Teleport proxy's, or is its error.
    #[error("GET {url}: {source}")]
    Answer {
        /// The URL whose answer it was.
        url: String,
        /// What was wrong with it.
        source: DiscoveryError,
    },
}

/// A response: status code, content type and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Teleport's JSON error message (`{"error":{"message":...}}` or `{"message":...}`), or
    /// the body as text.
    pub fn error_message(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .and_then(|m| m.as_str())
            .map_or_else(
                || String::from_utf8_lossy(&self.body).trim().to_string(),
                str::to_string,
            )
    }
}

/// A client for one proxy's web address.
#[derive(Debug, Clone)]
pub struct WebClient {
    addr: HostPort,
    tls: Arc<ClientConfig>,
    proxy: ProxyMatcher,
    timeout: Duration,
}

impl WebClient {
    /// A client for `addr` verifying the proxy's certificate with `tls` (ALPN is set to
    /// `http/1.1`); 30 s per request.
    pub fn new(addr: HostPort, tls: Arc<ClientConfig>) -> Self {
        let mut cfg = (*tls).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            addr,
            tls: Arc::new(cfg),
            proxy: ProxyMatcher::default(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Dials through an HTTP CONNECT proxy where `proxy` says so.
    #[must_use]
    pub fn with_proxy(mut self, proxy: ProxyMatcher) -> Self {
        self.proxy = proxy;
        self
    }

    /// Bounds each request.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response, WebError> {
        self.request("GET", path, None).await
    }

    /// Web-proxy discovery: `GET /webapi/find`, or `GET /webapi/ping` when the proxy
    /// answers 404 (older proxies), read with [`discovery::interpret`] — status and
    /// content type checked, so an HTML page or another service's JSON is "this is not a
    /// Teleport proxy", and a proxy's JSON error keeps its message.
    pub async fn find(&self) -> Result<PingResponse, FindError> {
        let request = |path: &'static str| async move {
            self.get(path).await.map_err(|e| FindError::Request {
                url: format!("https://{}{path}", self.addr),
                source: Box::new(e),
            })
        };
        let mut path = "/webapi/find";
        let mut resp = request(path).await?;
        if resp.status == 404 {
            path = "/webapi/ping";
            resp = request(path).await?;
        }
        discovery::interpret(resp.status, resp.content_type.as_deref(), &resp.body).map_err(
            |source| FindError::Answer {
                url: format!("https://{}{path}", self.addr),
                source,
            },
        )
    }

    /// The web address this client talks to.
    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Response, WebError> {
        self.request("POST", path, Some(body.to_string())).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, WebError> {
        let url = format!("https://{}{path}", self.addr);
        let io = |message: String| WebError::Io {
            url: url.clone(),
            message,
        };
        let run = async {
            let stream = dial::tcp(&self.addr, &self.proxy).await?;
            let mut tls = dial::tls_explained(
                stream,
                self.tls.clone(),
                &self.addr.host,
                &self.addr.to_string(),
                Peer::Web,
            )
            .await?;
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: tp/{}\r\n",
                self.addr,
                env!("CARGO_PKG_VERSION")
            );
            if let Some(b) = &body {
                req.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    b.len()
                ));
            }
            req.push_str("\r\n");
            if let Some(b) = &body {
                req.push_str(b);
            }
            tls.write_all(req.as_bytes())
                .await
                .map_err(|e| io(format!("sending the request: {e}")))?;
            tls.flush()
                .await
                .map_err(|e| io(format!("sending the request: {e}")))?;
            let mut raw = Vec::new();
            (&mut tls)
                .take((MAX_RESPONSE + 64 * 1024) as u64)
                .read_to_end(&mut raw)
                .await
                .map_err(|e| io(format!("reading the response: {e}")))?;
            Ok::<_, WebError>(raw)
        };
        let raw = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| io(format!("no response within {:?}", self.timeout)))??;
        parse_response(&raw).map_err(|message| WebError::Malformed { url, message })
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    let mut content_type = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-type" {
            content_type = Some(v.to_string());
        } else if k == "content-length" {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("content-length {v:?}"))?,
            );
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_RESPONSE {
        return Err(format!("body larger than {MAX_RESPONSE} bytes"));
    }
    Ok(Response {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 || out.len() + size > MAX_RESPONSE {
            return Err("truncated or oversized chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert_eq!(r.content_type, None);
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.content_type.as_deref(), Some("text/html; charset=utf-8"));
        let e = Response {
            status: 400,
            content_type: Some("application/json".into()),
            body: br#"{"error":{"message":"bad"}}"#.to_vec(),
        };
        assert_eq!(e.error_message(), "bad");
    }
}

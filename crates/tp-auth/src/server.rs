//! The Auth server assembled: every gRPC service of [`AuthServer`] on the mutual-TLS
//! listener, with the limits a Teleport client expects.
//!
//! A request message larger than [`MAX_REQUEST_BYTES`] is refused before it is decoded.
//! tonic reports that as `OUT_OF_RANGE`; Go's gRPC servers (Teleport's) say
//! `RESOURCE_EXHAUSTED`, which Teleport's client reads as `trace.LimitExceeded`, so
//! [`LimitExceededLayer`] rewrites the status. The connection stays up and later calls
//! are served.
//!
//! A client without a certificate (a host about to join) reaches only the paths in
//! [`ANONYMOUS_PATHS`]; [`AnonymousLayer`] answers every other call `AccessDenied` before
//! its message is decoded, so anonymous callers never reach a handler (nor its audit
//! writes).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::TryFutureExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tp_proto::proto::auth_service_server::AuthServiceServer;
use tp_proto::proto::join_service_server::JoinServiceServer;
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_server::ClusterConfigServiceServer;
use tp_proto::teleport::trust::v1::trust_service_server::TrustServiceServer;
use tp_proto::teleport::users::v1::users_service_server::UsersServiceServer;
use tp_proto::tp::audit::v1::audit_service_server::AuditServiceServer;
use tp_proto::tp::login::v1::login_service_server::LoginServiceServer;
use tp_proto::trail::ErrorKind;

use crate::listener::TlsConnection;
use crate::service::AuthServer;

/// The largest request message the server decodes: 4 MiB, gRPC's default (Go's
/// `grpc.MaxRecvMsgSize` default, which Teleport's Auth server keeps).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// What tonic's decoder says when a message is over the limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: ";

/// Serves every service of `auth` — `proto.AuthService`, `teleport.users.v1`,
/// `teleport.trust.v1`, `teleport.clusterconfig.v1` and tp's login service — on
/// `incoming` (from [`crate::listener::incoming`]) until the stream ends.
pub async fn serve(
    auth: AuthServer,
    incoming: ReceiverStream<std::io::Result<TlsConnection>>,
) -> Result<(), tonic::transport::Error> {
    serve_observed(auth, incoming, None).await
}

/// Called once per RPC with its path (`/proto.AuthService/GetRole`) and the gRPC status
/// code it ended with, as text (`"0"` for OK); for metrics.
pub type RpcObserver = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// [`serve`], reporting every RPC to `observer` (tonic answers an error trailers-only, so
/// the code is in the response headers; no code there means OK).
pub async fn serve_observed(
    auth: AuthServer,
    incoming: ReceiverStream<std::io::Result<TlsConnection>>,
    observer: Option<RpcObserver>,
) -> Result<(), tonic::transport::Error> {
    serve_until(auth, incoming, observer, std::future::pending()).await
}

/// [`serve_observed`] until `stop` completes; then no new connection or call is
/// taken, and it returns once the calls in flight have finished (HTTP/2 GOAWAY, then
/// draining). Watch streams stay open until their clients close them, so a caller that
/// must stop bounds the wait.
pub async fn serve_until(
    auth: AuthServer,
    incoming: ReceiverStream<std::io::Result<TlsConnection>>,
    observer: Option<RpcObserver>,
    stop: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(ObserveLayer(observer))
        .layer(AnonymousLayer)
        .layer(LimitExceededLayer)
        .add_service(
            AuthServiceServer::new(auth.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            UsersServiceServer::new(auth.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            TrustServiceServer::new(auth.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            ClusterConfigServiceServer::new(auth.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AuditServiceServer::new(auth.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            LoginServiceServer::new(auth.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(JoinServiceServer::new(auth).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}

/// The only calls a client without a certificate may make: joining.
pub const ANONYMOUS_PATHS: [&str; 2] = [
    "/proto.JoinService/RegisterUsingToken",
    "/proto.AuthService/GetClusterCACert",
];

/// A tower layer refusing every call but [`ANONYMOUS_PATHS`] from a connection that
/// presented no client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousLayer;

impl<S> tower::Layer<S> for AnonymousLayer {
    type Service = Anonymous<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Anonymous(inner)
    }
}

/// The service [`AnonymousLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct Anonymous<S>(S);

impl<S, B, RB> tower::Service<http::Request<B>> for Anonymous<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::Ready<Result<http::Response<RB>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let anonymous = req
            .extensions()
            .get::<crate::listener::PeerInfo>()
            .is_none_or(|p| p.certs.is_empty());
        if anonymous && !ANONYMOUS_PATHS.contains(&req.uri().path()) {
            let status = ErrorKind::AccessDenied.status(
                "no client certificate: this call needs a certificate signed by the cluster's \
                 user or host CA (without one, only GetClusterCACert and \
                 JoinService/RegisterUsingToken are open)",
            );
            return futures_util::future::Either::Right(futures_util::future::ready(Ok(
                status.into_http()
            )));
        }
        futures_util::future::Either::Left(self.0.call(req))
    }
}

/// A tower layer answering an over-limit request message with `RESOURCE_EXHAUSTED`
/// (Teleport's `LimitExceeded`) instead of tonic's `OUT_OF_RANGE`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitExceededLayer;

impl<S> tower::Layer<S> for LimitExceededLayer {
    type Service = LimitExceeded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitExceeded(inner)
    }
}

/// The service [`LimitExceededLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct LimitExceeded<S>(S);

impl<S, Req, B> tower::Service<Req> for LimitExceeded<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future =
        futures_util::future::MapOk<S::Future, fn(http::Response<B>) -> http::Response<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.0.call(req).map_ok(rewrite_too_large::<B>)
    }
}

/// A tower layer reporting each RPC to an [`RpcObserver`].
#[derive(Clone, Default)]
pub struct ObserveLayer(Option<RpcObserver>);

impl std::fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ObserveLayer")
            .field(&self.0.is_some())
            .finish()
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            observer: self.0.clone(),
        }
    }
}

/// The service [`ObserveLayer`] wraps around the gRPC routes.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    observer: Option<RpcObserver>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Observe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<http::Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let observer = self.observer.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await;
            if let (Some(o), Ok(r)) = (&observer, &resp) {
                let code = r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0");
                o(&path, code);
            }
            resp
        })
    }
}

/// Rewrites a trailers-only `OUT_OF_RANGE` "message too large" answer (what tonic sends
/// when it refuses to decode a request) to `RESOURCE_EXHAUSTED`.
fn rewrite_too_large<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let Some(status) = tonic::Status::from_header_map(resp.headers()) else {
        return resp;
    };
    if status.code() != tonic::Code::OutOfRange {
        return resp;
    }
    let Some(detail) = status.message().strip_prefix(TONIC_TOO_LARGE) else {
        return resp;
    };
    let limited = ErrorKind::LimitExceeded.status(format!(
        "request message too large: {detail} (gRPC's maximum message size)"
    ));
    let headers = resp.headers_mut();
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    if limited.add_header(headers).is_err() {
        tracing::warn!("cannot rewrite an over-limit status");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: tonic::Status) -> http::Response<()> {
        status.into_http()
    }

    #[test]
    fn only_tonics_too_large_answer_is_rewritten() {
        let too_large = tonic::Status::out_of_range(format!(
            "{TONIC_TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"
        ));
        let got =
            tonic::Status::from_header_map(rewrite_too_large(answer(too_large)).headers()).unwrap();
        assert_eq!(got.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            got.message(),
            "request message too large: found 5000000 bytes, the limit is: 4194304 bytes \
             (gRPC's maximum message size)"
        );
        for other in [
            tonic::Status::out_of_range("page token out of range"),
            tonic::Status::not_found("role \"x\" is not found"),
        ] {
            let (code, msg) = (other.code(), other.message().to_string());
            let got =
                tonic::Status::from_header_map(rewrite_too_large(answer(other)).headers()).unwrap();
            assert_eq!((got.code(), got.message()), (code, msg.as_str()));
        }
        let ok = http::Response::new(());
        assert!(rewrite_too_large(ok).headers().is_empty());
    }
}

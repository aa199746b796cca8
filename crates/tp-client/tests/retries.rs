//! Retries: idempotent reads are retried after UNAVAILABLE with backoff, writes never,
//! and an error the server means (NOT_FOUND, a server-sent UNKNOWN) is not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tp_client::{Client, ErrorKind};
use tp_proto::proto::CreateRoleRequest;
use tp_proto::proto::GetRoleRequest;
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::types::{Metadata, RoleV6};

/// Fails the first `failures` calls of each method with UNAVAILABLE, then answers.
#[derive(Clone, Default)]
struct Flaky {
    failures: u32,
    get_calls: Arc<AtomicU32>,
    create_calls: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl AuthService for Flaky {
    async fn get_role(&self, req: Request<GetRoleRequest>) -> Result<Response<RoleV6>, Status> {
        let n = self.get_calls.fetch_add(1, Ordering::SeqCst);
        let name = req.into_inner().name;
        match name.as_str() {
            "missing" => return Err(Status::not_found("role \"missing\" is not found")),
            "bug" => return Err(Status::unknown("the server hit a bug")),
            _ => {}
        }
        if n < self.failures {
            return Err(Status::unavailable("auth server is starting"));
        }
        Ok(Response::new(RoleV6 {
            metadata: Some(Metadata {
                name,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn create_role(&self, _: Request<CreateRoleRequest>) -> Result<Response<RoleV6>, Status> {
        self.create_calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("auth server is starting"))
    }
}

async fn serve(auth: Flaky) -> Client {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(auth))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Client::from_channel(channel)
}

#[tokio::test]
async fn reads_are_retried_with_backoff_and_writes_are_not() {
    let auth = Flaky {
        failures: 2,
        ..Default::default()
    };
    let client = serve(auth.clone()).await;
    let started = Instant::now();
    let r = client.get_role("api-role").await.unwrap();
    assert_eq!(r.metadata.unwrap().name, "api-role");
    assert_eq!(auth.get_calls.load(Ordering::SeqCst), 3, "two retries");
    // Backoff: at least half of 100 ms + half of 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(150));

    let e = client.create_role(RoleV6::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionProblem);
    assert_eq!(
        auth.create_calls.load(Ordering::SeqCst),
        1,
        "a write is sent once"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_answers_are_not_retried() {
    let auth = Flaky {
        failures: 100,
        ..Default::default()
    };
    let client = serve(auth.clone()).await.with_read_retries(1);
    let e = client.get_role("api-role").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionProblem);
    assert_eq!(auth.get_calls.load(Ordering::SeqCst), 2, "one retry");

    let auth = Flaky::default();
    let client = serve(auth.clone()).await;
    let e = client.get_role("missing").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = client.get_role("bug").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(
        auth.get_calls.load(Ordering::SeqCst),
        2,
        "neither is retried"
    );
}

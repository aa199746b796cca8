//! The Auth server's mutual-TLS listener and identity decoding over real sockets:
//! who gets in and what the server learns about the caller. Who is refused, and with
//! which error, is `tests/tests/rejections.rs` (against the whole server).

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tp_auth::identity;
use tp_auth::listener::{self, PeerInfo};
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::proto::{PingRequest, PingResponse};
use tp_tests::pki::{Ca, client_tls, connect};
use tp_transport::addr::HostPort;

/// Answers Ping with what it decoded from the caller's certificate.
struct WhoAmI {
    user_ca: Vec<u8>,
    host_ca: Vec<u8>,
}

#[tonic::async_trait]
impl AuthService for WhoAmI {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let peer = req
            .extensions()
            .get::<PeerInfo>()
            .ok_or_else(|| Status::unauthenticated("no peer"))?;
        let leaf = peer
            .certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no certificate"))?;
        let id = identity::from_certificate(
            leaf,
            std::slice::from_ref(&self.user_ca),
            std::slice::from_ref(&self.host_ca),
        )
        .map_err(|e| Status::permission_denied(e.to_string()))?;
        Ok(Response::new(PingResponse {
            cluster_name: id.teleport_cluster.clone(),
            server_version: format!(
                "{}|{}|{:?}|{}",
                id.username,
                id.groups.join(","),
                id.signer,
                id.traits["logins"].join(",")
            ),
            ..Default::default()
        }))
    }
}

struct Cluster {
    user_ca: Ca,
    host_ca: Ca,
    addr: HostPort,
}

async fn cluster() -> Cluster {
    let user_ca = Ca::new("example.com");
    let host_ca = Ca::new("example.com");
    let (chain, key) = host_ca.server();
    let config = listener::server_config(chain, key, vec![user_ca.der(), host_ca.der()]).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    let svc = WhoAmI {
        user_ca: user_ca.der().to_vec(),
        host_ca: host_ca.der().to_vec(),
    };
    let incoming = listener::incoming(l, Arc::new(config));
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(svc))
            .serve_with_incoming(incoming),
    );
    Cluster {
        user_ca,
        host_ca,
        addr,
    }
}

#[tokio::test]
async fn a_user_certificate_gets_in_and_its_identity_reaches_the_handler() {
    let c = cluster().await;
    for mode in ["direct", "tls-routing"] {
        let tls = client_tls(
            &c.host_ca,
            Some(c.user_ca.identity("alice", "api-role", false)),
        );
        let client = connect(&c.addr, tls, mode)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let p = client.ping().await.unwrap();
        assert_eq!(p.cluster_name, "example.com");
        assert_eq!(
            p.server_version, "alice|api-role|UserCa|alice,root",
            "{mode}"
        );
    }
}

#[tokio::test]
async fn a_host_certificate_is_attributed_to_the_host_ca() {
    let c = cluster().await;
    let tls = client_tls(
        &c.host_ca,
        Some(c.host_ca.identity("proxy-1.example.com", "Proxy", false)),
    );
    let p = connect(&c.addr, tls, "direct")
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(
        p.server_version
            .starts_with("proxy-1.example.com|Proxy|HostCa"),
        "{}",
        p.server_version
    );
}

/// A connection the Auth listener accepted (a user's certificate, over real mutual
/// TLS), and the client's end of it.
async fn accepted() -> (
    listener::TlsConnection,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use futures_util::StreamExt as _;

    let user_ca = Ca::new("example.com");
    let host_ca = Ca::new("example.com");
    let (chain, key) = host_ca.server();
    let config = listener::server_config(chain, key, vec![user_ca.der(), host_ca.der()]).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mut incoming = listener::incoming(l, Arc::new(config));
    let tls = client_tls(&host_ca, Some(user_ca.identity("alice", "api-role", false)));
    let client = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("teleport.cluster.local").unwrap();
        tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .unwrap()
    });
    let conn = incoming.next().await.unwrap().unwrap();
    (conn, client.await.unwrap())
}

/// An accepted connection takes a vectored write whole (h2 hands over a frame head and
/// its payload as two slices): one TLS record carries both.
#[tokio::test]
async fn an_accepted_connection_writes_vectored() {
    use tokio::io::{AsyncReadExt as _, AsyncWrite as _, AsyncWriteExt as _};

    let (mut conn, mut client) = accepted().await;
    assert!(conn.is_write_vectored());
    let slices = [
        std::io::IoSlice::new(b"head"),
        std::io::IoSlice::new(b"payload"),
    ];
    assert_eq!(
        conn.write_vectored(&slices).await.unwrap(),
        11,
        "both slices"
    );
    conn.flush().await.unwrap();
    let mut got = [0u8; 11];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"headpayload");
}

/// Counts the wake-ups of the task polling by hand.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Writes are held back until a flush, and the flush first lets the other ready tasks
/// run (it wakes its own task and returns `Pending`), once and then again while each
/// turn brings more writes (at most four turns), so that responses finished meanwhile
/// leave together.
#[tokio::test]
async fn writes_leave_together_at_the_flush_after_the_turns_that_bring_more() {
    use tokio::io::{AsyncReadExt as _, AsyncWrite as _, AsyncWriteExt as _};

    let (mut conn, mut client) = accepted().await;
    let (first_tx, mut first_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 16];
        client.read_exact(&mut got[..1]).await.unwrap();
        let _ = first_tx.send(());
        client.read_exact(&mut got[1..]).await.unwrap();
        (got, client)
    });
    conn.write_all(b"first").await.unwrap();
    conn.write_all(b"second").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        first_rx.try_recv().is_err(),
        "nothing leaves before the flush"
    );

    let wakes = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        std::pin::Pin::new(&mut conn)
            .poll_flush(&mut cx)
            .is_pending(),
        "the first flush gives way"
    );
    let woken = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(woken(), 1, "and has its task polled again");
    let mut flush = |conn: &mut listener::TlsConnection| {
        std::pin::Pin::new(conn).poll_flush(&mut cx).is_ready()
    };
    conn.write_all(b"third").await.unwrap();
    assert!(
        !flush(&mut conn),
        "a turn that brought a write earns another"
    );
    assert_eq!(woken(), 2);
    assert!(
        flush(&mut conn),
        "a turn that brought nothing ends the wait"
    );
    assert_eq!(woken(), 2);
    let (got, mut client) = reader.await.unwrap();
    assert_eq!(got, b"firstsecondthird");

    // However much each turn brings, the fifth flush sends.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        got
    });
    for turn in 1..=4 {
        conn.write_all(b"x").await.unwrap();
        assert!(!flush(&mut conn), "turn {turn} gives way");
    }
    conn.write_all(b"x").await.unwrap();
    assert!(flush(&mut conn), "after four turns the flush sends");
    assert_eq!(reader.await.unwrap(), b"xxxxx");

    // A flush with nothing held back does not give way.
    assert!(std::pin::Pin::new(&mut conn).poll_flush(&mut cx).is_ready());
}

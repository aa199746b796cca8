//! tp-client against an in-process gRPC server that plays a Teleport Auth server of an
//! older or newer release: error mapping, pagination, and the Go client's fallbacks on
//! UNIMPLEMENTED.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tp_client::{Client, ErrorKind};
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::proto::{
    GetRoleRequest, GetUserRequest, ListRolesRequest, ListRolesResponse, PingRequest, PingResponse,
};
use tp_proto::types::{Metadata, RoleV6, UserV2};

/// An Auth server of an older release: no UpsertRoleV2 and no UsersService, so the
/// client must use the legacy calls (both answer UNIMPLEMENTED through tonic's default
/// stubs and unknown-service handling).
#[derive(Default, Clone)]
struct OldAuth {
    roles: Arc<Mutex<BTreeMap<String, RoleV6>>>,
    users: Arc<Mutex<BTreeMap<String, UserV2>>>,
    list_calls: Arc<Mutex<Vec<String>>>,
}

fn role(name: &str) -> RoleV6 {
    RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl AuthService for OldAuth {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            cluster_name: "example.com".into(),
            server_version: "14.3.0".into(),
            ..Default::default()
        }))
    }

    async fn get_role(&self, req: Request<GetRoleRequest>) -> Result<Response<RoleV6>, Status> {
        let name = req.into_inner().name;
        self.roles
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("role {name:?} is not found")))
    }

    async fn list_roles(
        &self,
        req: Request<ListRolesRequest>,
    ) -> Result<Response<ListRolesResponse>, Status> {
        let req = req.into_inner();
        self.list_calls.lock().unwrap().push(req.start_key.clone());
        // Pages of two, whatever the client asks for, to exercise pagination.
        let roles = self.roles.lock().unwrap();
        let mut page: Vec<RoleV6> = roles
            .range(req.start_key.clone()..)
            .take(3)
            .map(|(_, r)| r.clone())
            .collect();
        let next_key = if page.len() == 3 {
            page.pop()
                .and_then(|r| r.metadata)
                .map(|m| m.name)
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListRolesResponse {
            roles: page,
            next_key,
        }))
    }

    async fn upsert_role(&self, req: Request<RoleV6>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        let name = r
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.roles.lock().unwrap().insert(name, r);
        Ok(Response::new(()))
    }

    async fn create_user(&self, req: Request<UserV2>) -> Result<Response<()>, Status> {
        let u = req.into_inner();
        let name = u
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut users = self.users.lock().unwrap();
        if users.contains_key(&name) {
            return Err(Status::already_exists(format!(
                "user {name:?} already exists"
            )));
        }
        users.insert(name, u);
        Ok(Response::new(()))
    }

    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<UserV2>, Status> {
        let name = req.into_inner().name;
        self.users
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("user {name:?} is not found")))
    }
}

async fn serve(auth: OldAuth) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        Server::builder()
            .add_service(AuthServiceServer::new(auth))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the test server");
    Client::from_channel(channel)
}

#[tokio::test]
async fn errors_map_to_kinds_with_the_server_message() {
    let client = serve(OldAuth::default()).await;
    let e = client.get_role("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "role \"nope\" is not found");
    assert_eq!(e.status().map(Status::code), Some(tonic::Code::NotFound));

    // Refused locally, like the Go client, without a round trip.
    let e = client.get_role("").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter);
    assert!(e.status().is_none());

    // A method this server does not serve.
    let e = client.get_tokens().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented);
}

#[tokio::test]
async fn upsert_role_falls_back_to_the_legacy_call() {
    let auth = OldAuth::default();
    let client = serve(auth.clone()).await;
    let stored = client
        .upsert_role(role("dev"))
        .await
        .expect("fallback works");
    assert_eq!(stored.metadata.unwrap().name, "dev");
    assert!(auth.roles.lock().unwrap().contains_key("dev"));
}

#[tokio::test]
async fn user_calls_fall_back_to_the_legacy_auth_service() {
    let client = serve(OldAuth::default()).await;
    let user = UserV2 {
        kind: "user".into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = client
        .create_user(user.clone())
        .await
        .expect("legacy create");
    assert_eq!(created.metadata.unwrap().name, "alice");
    let again = client.create_user(user).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
}

#[tokio::test]
async fn get_roles_walks_every_page() {
    let auth = OldAuth::default();
    for n in ["a", "b", "c", "d", "e"] {
        auth.roles.lock().unwrap().insert(n.into(), role(n));
    }
    let client = serve(auth.clone()).await;
    let names: Vec<String> = client
        .get_roles()
        .await
        .expect("all pages")
        .into_iter()
        .map(|r| r.metadata.unwrap().name)
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        *auth.list_calls.lock().unwrap(),
        ["", "c", "e"],
        "three pages, each from the previous next_key"
    );
}

#[tokio::test]
async fn ping_reports_the_cluster() {
    let client = serve(OldAuth::default()).await;
    let p = client.ping().await.expect("ping");
    assert_eq!(p.cluster_name, "example.com");
}

//! A cluster that bootstrapped its own CAs: the Auth server's certificate and the local
//! admin identity come from its host CA, the trust service hands out CAs with keys only
//! to callers that may read secrets, and certificates the cluster issues log a user in.

use tp_auth::ca::Issued;
use tp_client::ErrorKind;
use tp_tests::cluster::{TestCluster, now};

#[tokio::test]
async fn trust_service_on_a_bootstrapped_cluster() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let admin = c.admin().await;
    let with_keys = admin
        .get_cert_authority("user", "example.com", true)
        .await
        .unwrap();
    assert!(
        !with_keys
            .spec
            .as_ref()
            .unwrap()
            .active_keys
            .as_ref()
            .unwrap()
            .tls[0]
            .key
            .is_empty(),
        "admin reads secrets"
    );
    assert_eq!(
        admin
            .get_cert_authorities("host", false)
            .await
            .unwrap()
            .len(),
        1
    );

    let proxy = c.client(&c.host_identity("Proxy")).await;
    let public = proxy
        .get_cert_authority("host", "example.com", false)
        .await
        .unwrap();
    let keys = public.spec.unwrap().active_keys.unwrap();
    assert!(
        keys.tls[0].key.is_empty() && keys.ssh[0].private_key.is_empty(),
        "no secrets without the right to read them"
    );
    assert!(!keys.tls[0].cert.is_empty());
    assert_eq!(
        proxy
            .get_cert_authority("host", "example.com", true)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AccessDenied
    );
    assert_eq!(
        proxy
            .get_cert_authority("host", "nope.example.com", false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// An SSH certificate for `api-user` on `key`, asking for `seconds` of validity (the
/// server's default without).
async fn api_user_ssh_cert(
    admin: &tp_client::Client,
    key: &ssh_key::PublicKey,
    seconds: Option<i64>,
) -> ssh_key::Certificate {
    let certs = admin
        .generate_user_certs(tp_proto::proto::UserCertsRequest {
            username: "api-user".into(),
            ssh_public_key: key.to_openssh().unwrap().into_bytes(),
            expires: seconds.map(|s| prost_types::Timestamp {
                seconds: now() + s,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    ssh_key::Certificate::from_openssh(std::str::from_utf8(&certs.ssh).unwrap().trim()).unwrap()
}

#[tokio::test]
async fn certificates_issued_by_the_cluster_log_a_user_in() {
    use tp_proto::proto::UserCertsRequest;
    use tp_proto::resource::{Resource, parse};
    use tp_proto::types::{Metadata, UserSpecV2, UserV2};
    use tp_proto::wrappers::{LabelValues, StringValues};

    let c = TestCluster::start("proxy.example.com:3080").await;
    let admin = c.admin().await;
    let Resource::Role(role) = parse(
        "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  options: {max_session_ttl: 2h}\n  allow:\n    logins: ['{{internal.logins}}', deploy]\n    rules: [{resources: [role], verbs: [read]}]\n",
        "t",
    )
    .unwrap()
    .remove(0) else {
        unreachable!()
    };
    admin.create_role(role).await.unwrap();
    let traits = LabelValues {
        values: [(
            "logins".to_string(),
            StringValues {
                values: vec!["api".into()],
            },
        )]
        .into(),
    };
    admin
        .create_user(UserV2 {
            kind: "user".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: "api-user".into(),
                ..Default::default()
            }),
            spec: Some(UserSpecV2 {
                roles: vec!["api-role".into()],
                traits: Some(traits),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    // The admin signs certificates for api-user's keys (as `tctl auth sign` does),
    // asking for 100 hours; the role caps them at 2.
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let ssh_key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: tls_key.public_key_pem().into_bytes(),
            ssh_public_key: ssh_key.public_key().to_openssh().unwrap().into_bytes(),
            expires: Some(prost_types::Timestamp {
                seconds: now() + 100 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let ssh_cert =
        ssh_key::Certificate::from_openssh(std::str::from_utf8(&certs.ssh).unwrap().trim())
            .unwrap();
    assert_eq!(
        ssh_cert.valid_principals(),
        ["api", "deploy", "-teleport-internal-join"],
        "traits expanded"
    );
    let lifetime = ssh_cert.valid_before() as i64 - now();
    assert!(
        (7000..=7300).contains(&lifetime),
        "capped at the role's 2h: {lifetime}"
    );
    assert_eq!(certs.tlsca_certs.len(), 1);

    // An edited role takes effect on the next issuance (decoded roles are cached by
    // revision, never beyond it).
    let mut edited = admin.get_role("api-role").await.unwrap();
    edited
        .spec
        .as_mut()
        .unwrap()
        .options
        .as_mut()
        .unwrap()
        .max_session_ttl = 3600 * 1_000_000_000;
    admin.update_role(edited).await.unwrap();
    let again = api_user_ssh_cert(&admin, ssh_key.public_key(), Some(100 * 3600)).await;
    let lifetime = again.valid_before() as i64 - now();
    assert!(
        (3400..=3700).contains(&lifetime),
        "capped at the edited role's 1h: {lifetime}"
    );

    // So does an edited user (decoded users are cached by revision too): new traits
    // change the logins at once.
    let mut user = admin.get_user("api-user", false).await.unwrap();
    user.spec.as_mut().unwrap().traits = Some(LabelValues {
        values: [(
            "logins".to_string(),
            StringValues {
                values: vec!["ops".into()],
            },
        )]
        .into(),
    });
    admin.update_user(user).await.unwrap();
    let renamed = api_user_ssh_cert(&admin, ssh_key.public_key(), None).await;
    assert_eq!(
        renamed.valid_principals(),
        ["ops", "deploy", "-teleport-internal-join"],
        "the edited user's traits"
    );

    // api-user logs in with them: may read its role, may not list users.
    let issued = Issued {
        cert_pem: String::from_utf8(certs.tls).unwrap(),
        key_pem: tls_key.serialize_pem(),
    };
    let api = c.client(&issued).await;
    assert!(api.get_role("api-role").await.is_ok());
    assert_eq!(
        api.get_users(false).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
    // It may renew its own certificates, not anybody else's.
    let own = UserCertsRequest {
        tls_public_key: tls_key.public_key_pem().into_bytes(),
        ..Default::default()
    };
    assert!(api.generate_user_certs(own.clone()).await.is_ok());
    let other = UserCertsRequest {
        username: "admin".into(),
        ..own
    };
    assert_eq!(
        api.generate_user_certs(other).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
}

/// Certificates come from the user CA as stored now: the Auth server keeps the CA's
/// parsed keys and the host CA's public parts by revision, never past a change.
#[tokio::test]
async fn issuance_follows_a_replaced_user_ca() {
    use prost::Message as _;
    use std::sync::Arc;
    use tp_auth::ca::{CaType, generate, tls_certs_der};
    use tp_auth::store::{BackendStore, Kind, Store as _};
    use tp_proto::proto::UserCertsRequest;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    let store = Arc::new(BackendStore::memory());
    let c = TestCluster::start_with(store.clone(), "proxy.example.com:3080").await;
    let admin = c.admin().await;
    admin
        .create_user(tp_proto::types::UserV2::new("alice", &["access"]))
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let issue = || {
        let admin = admin.clone();
        let pem = key.public_key_pem();
        async move {
            admin
                .generate_user_certs(UserCertsRequest {
                    username: "alice".into(),
                    tls_public_key: pem.into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let verifies_under = |certs: &tp_proto::proto::Certs, ca: &[u8]| {
        use rustls_pki_types::pem::PemObject as _;
        let leaf = rustls_pki_types::CertificateDer::from_pem_slice(&certs.tls).unwrap();
        let (_, leaf) = X509Certificate::from_der(&leaf).unwrap();
        let (_, ca) = X509Certificate::from_der(ca).unwrap();
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    };
    let old_ca = tls_certs_der(&c.state.user_ca).remove(0);
    let before = issue().await;
    assert!(verifies_under(&before, &old_ca));

    // Another user CA and host CA replace the stored ones.
    let user_ca = generate("example.com", CaType::User, now()).unwrap();
    let host_ca = generate("example.com", CaType::Host, now()).unwrap();
    for (name, ca) in [
        ("user/example.com", &user_ca),
        ("host/example.com", &host_ca),
    ] {
        store
            .put(Kind::CertAuthority, name, ca.encode_to_vec(), None)
            .await
            .unwrap();
    }
    let after = issue().await;
    let new_ca = tls_certs_der(&user_ca).remove(0);
    assert!(verifies_under(&after, &new_ca), "signed by the new user CA");
    assert!(!verifies_under(&after, &old_ca));
    let host_pem = &host_ca
        .spec
        .as_ref()
        .unwrap()
        .active_keys
        .as_ref()
        .unwrap()
        .tls[0]
        .cert;
    assert_eq!(
        after.tlsca_certs,
        std::slice::from_ref(host_pem),
        "the new host CA"
    );
}

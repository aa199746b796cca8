//! Teleport's reference Go client against a tp Auth server: `client.New` with
//! `client.LoadKeyPair` over direct mutual TLS; the named cases are in
//! `tests/interop-go/cmd/clientcheck`. The cluster bootstraps its own CAs. The local
//! admin identity creates the seed's role and user and has the cluster sign
//! certificates for a key pair the Go side generates; `api-user` then logs in with
//! those certificates, reads its role and is denied the rest, with the error kinds Go's
//! `trace.Is*` recognise.

use tp_tests::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread")]
async fn teleport_go_client_against_tp_auth() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let addr = c.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), c.host_ca_pem()).unwrap();
    let admin = c.host_identity("Admin");
    let admin_dir = dir.path().join("admin");
    let user_dir = dir.path().join("user");
    std::fs::create_dir(&admin_dir).unwrap();
    std::fs::create_dir(&user_dir).unwrap();
    std::fs::write(admin_dir.join("cert.pem"), &admin.cert_pem).unwrap();
    std::fs::write(admin_dir.join("key.pem"), &admin.key_pem).unwrap();

    let p = |d: &std::path::Path, f: &str| d.join(f).to_string_lossy().into_owned();
    let ca_path = p(dir.path(), "ca.pem");
    let runs = [
        vec![
            addr.clone(),
            p(&admin_dir, "cert.pem"),
            p(&admin_dir, "key.pem"),
            ca_path.clone(),
            "admin".into(),
            user_dir.to_string_lossy().into_owned(),
        ],
        // api-user logs in with the certificates the cluster issued to the Go side.
        vec![
            addr.clone(),
            p(&user_dir, "cert.pem"),
            p(&user_dir, "key.pem"),
            ca_path,
            "user".into(),
        ],
    ];
    for args in runs {
        // The Go program blocks; run it off the runtime that serves the cluster.
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tp_tests::run_go("clientcheck", &args)
        })
        .await
        .unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&out).expect("clientcheck prints JSON");
        let cases = results.as_array().expect("a list of cases");
        assert!(cases.len() >= 3, "{out}");
        for c in cases {
            assert_eq!(c["ok"], true, "{c}");
            eprintln!(
                "go client case ok: {}",
                c["case"].as_str().unwrap_or_default()
            );
        }
    }
}

//! The examples as a user runs them: the seed's flow against a real tp Auth server with
//! each loader (identity file, key pair, TLS config, tsh profile), the watcher printing
//! role events, and bad input answered with one error line and one hint line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tp_creds::{Format, IdentityBundle, KeyAlgorithm, PrivateKey, ProfileConfig, write_profile};
use tp_proto::proto::UserCertsRequest;
use tp_proto::types::{Metadata, RoleConditions, RoleSpecV6, RoleV6, Rule, UserV2};
use tp_tests::cluster::{TestCluster, now};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

/// [`run`] off the async runtime, so the in-process cluster keeps serving.
async fn run_async(bin: &str, args: &[&str]) -> Output {
    let bin = bin.to_string();
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || Command::new(bin).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The seed: `api-role` may read roles; `api-user` has it. Returns the user's
/// credentials written as an identity file, a `tls` triple and a profile.
async fn seed(c: &TestCluster, dir: &std::path::Path) {
    let admin = c.admin().await;
    admin
        .create_role(RoleV6 {
            kind: "role".into(),
            version: "v7".into(),
            metadata: Some(Metadata {
                name: "api-role".into(),
                ..Default::default()
            }),
            spec: Some(RoleSpecV6 {
                allow: Some(RoleConditions {
                    rules: vec![Rule {
                        resources: vec!["role".into()],
                        verbs: vec!["read".into(), "list".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let spki = tp_creds::pem::encode("PUBLIC KEY", &key.public_key_spki_der().unwrap());
    let ssh_pub = key.ssh_public_key().unwrap().to_openssh().unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: spki.into_bytes(),
            ssh_public_key: ssh_pub.into_bytes(),
            expires: Some(prost_types::Timestamp {
                seconds: now() + 3600,
                nanos: 0,
            }),
            route_to_cluster: "example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut b = IdentityBundle::new(key);
    b.tls_cert = Some(String::from_utf8(certs.tls).unwrap());
    b.ssh_cert = Some(String::from_utf8(certs.ssh).unwrap());
    b.tls_cas = vec![String::from_utf8(c.host_ca_pem()).unwrap()];
    b.write(Format::File, &dir.join("identity")).unwrap();
    b.write(Format::Tls, &dir.join("out")).unwrap();
    write_profile(
        &dir.join("tsh"),
        &ProfileConfig::new("proxy.example.com:3080", "api-user", "example.com"),
        &b,
        true,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_loader_reads_the_seed_role() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    seed(&c, dir.path()).await;
    let p = |f: &str| dir.path().join(f).display().to_string();
    let addr = c.addr.to_string();
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            env!("CARGO_BIN_EXE_get-role-identity"),
            vec![
                "--identity".into(),
                p("identity"),
                "--addr".into(),
                addr.clone(),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_get-role-keypair"),
            vec![
                "--cert".into(),
                p("out.crt"),
                "--key".into(),
                p("out.key"),
                "--cas".into(),
                p("out.cas"),
                "--addr".into(),
                addr.clone(),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_get-role-tls"),
            vec![
                "--cert".into(),
                p("out.crt"),
                "--key".into(),
                p("out.key"),
                "--ca".into(),
                p("out.cas"),
                format!("--addr={addr}"),
            ],
        ),
        (
            env!("CARGO_BIN_EXE_get-role-profile"),
            vec!["--dir".into(), p("tsh"), "--addr".into(), addr.clone()],
        ),
    ];
    for (bin, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_async(bin, &args).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{bin} {args:?}:\n{stderr}");
        assert!(stdout.starts_with("kind: role\n"), "{bin}:\n{stdout}");
        assert!(stdout.contains("name: api-role\n"), "{bin}:\n{stdout}");

        // A role the user may read but that does not exist: NotFound with its hint.
        let mut args = args.clone();
        args.extend(["--role", "no-such-role"]);
        let out = run_async(bin, &args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bin}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot read role \"no-such-role\": ")
                && stderr.contains("\nhint: create it first"),
            "{bin}:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watcher_prints_role_events() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    seed(&c, dir.path()).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_watch-roles"))
        .args([
            "--identity",
            &dir.path().join("identity").display().to_string(),
        ])
        .args(["--addr", &c.addr.to_string(), "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a line within 20 s")
            .expect("the watcher is running")
    };
    assert_eq!(next(&mut rx).await, "INIT");
    let admin = c.admin().await;
    let mut role = admin.get_role("api-role").await.unwrap();
    role.metadata.as_mut().unwrap().name = "copy".into();
    role.metadata.as_mut().unwrap().revision.clear();
    admin.create_role(role).await.unwrap();
    admin.delete_role("copy").await.unwrap();
    assert_eq!(next(&mut rx).await, "PUT copy");
    assert_eq!(next(&mut rx).await, "DELETE copy");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exits after --count events");
}

#[test]
fn bad_input_is_one_error_line_and_one_hint() {
    let missing = "/nonexistent/identity";
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            env!("CARGO_BIN_EXE_get-role-identity"),
            vec![],
            "error: missing --identity",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-identity"),
            vec!["--identity", missing, "--addr", "localhost:3025"],
            "error: cannot use the credential: cannot read /nonexistent/identity",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-identity"),
            vec!["--identity", missing, "--bogus", "1"],
            "error: unknown option --bogus",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-keypair"),
            vec!["cert.pem"],
            "error: unexpected argument \"cert.pem\"",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-keypair"),
            vec![
                "--cert",
                "/nonexistent/c",
                "--key",
                "/nonexistent/k",
                "--cas",
                "/nonexistent/a",
                "--addr",
                "x:1",
            ],
            "error: cannot use the credential: ",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-tls"),
            vec![
                "--cert",
                "/nonexistent/c",
                "--key",
                "k",
                "--ca",
                "a",
                "--addr",
                "x:1",
            ],
            "error: cannot read certificates from /nonexistent/c",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-tls"),
            vec!["--cert"],
            "error: --cert needs a value",
        ),
        (
            env!("CARGO_BIN_EXE_get-role-profile"),
            vec!["--dir", "/nonexistent/tsh"],
            "error: cannot use the credential: ",
        ),
        (
            env!("CARGO_BIN_EXE_watch-roles"),
            vec!["--count", "many"],
            "error: --count \"many\" is not a number",
        ),
        (
            env!("CARGO_BIN_EXE_watch-roles"),
            vec!["--identity", missing],
            "error: missing --addr",
        ),
    ];
    for (bin, args, want) in cases {
        let out = run(bin, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bin} {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{bin} {args:?}: one error, one hint:\n{stderr}"
        );
        assert!(lines[0].starts_with(want), "{bin} {args:?}:\n{stderr}");
        assert!(lines[1].starts_with("hint: "), "{bin} {args:?}:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Every binary answers --help with its usage.
    for bin in [
        env!("CARGO_BIN_EXE_get-role-identity"),
        env!("CARGO_BIN_EXE_get-role-keypair"),
        env!("CARGO_BIN_EXE_get-role-tls"),
        env!("CARGO_BIN_EXE_get-role-profile"),
        env!("CARGO_BIN_EXE_watch-roles"),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success());
        assert!(text(&out.stdout).starts_with("usage: "), "{bin}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_address_and_a_dead_port_are_explained() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    seed(&c, dir.path()).await;
    let id = dir.path().join("identity").display().to_string();
    let bin = env!("CARGO_BIN_EXE_get-role-identity");
    let out = run(bin, &["--identity", &id, "--addr", "localhost:notaport"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot use the credential: address \"localhost:notaport\""),
        "{stderr}"
    );
    // Nothing listens there: the error lists each attempt, then the hint.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = l.local_addr().unwrap().to_string();
    drop(l);
    let out = run_async(bin, &["--identity", &id, "--addr", &closed]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot connect: all 4 connection attempts failed:"),
        "{stderr}"
    );
    // An identity file carries SSH material, so the tunnel is among the attempts.
    for mode in ["direct", "tunnel", "tls-routing", "discovery"] {
        assert!(
            stderr.contains(&format!("{closed} via {mode} with {id}:")),
            "{mode}: {stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("{closed} via direct with {id}: cannot connect")),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("hint: check --addr"),
        "{stderr}"
    );
}

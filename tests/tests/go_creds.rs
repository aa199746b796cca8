//! Credentials both ways between tp-creds and Teleport's reference Go code:
//!
//! - files written by the reference writers (`identityfile.Write`, `profile.SaveToDir`
//!   with the `keypaths` layout; `tests/interop-go/cmd/credsgen`) load in tp with the same
//!   user, roles, logins, expiry and CA;
//! - files tp writes (identity file, v17 profile, `tls` key pair) load in the reference
//!   loaders (`client.LoadIdentityFile`, `LoadProfile`, `LoadKeyPair`;
//!   `tests/interop-go/cmd/credsload`), whose TLS and SSH configurations build and say
//!   what tp meant.

use std::time::{SystemTime, UNIX_EPOCH};

use tp_creds::sign::{X509Signer, self_signed_ca};
use tp_creds::{
    Credentials, Format, IdentityBundle, IdentityFile, KeyAlgorithm, KeyPair, PrivateKey, Profile,
    ProfileConfig, SshIdentity, TlsIdentity, write_profile,
};

fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn tp_reads_what_teleport_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = tp_tests::run_go("credsgen", &[dir.path().to_str().unwrap()]);
    let m: serde_json::Value = serde_json::from_str(&out).expect("credsgen prints a manifest");
    let s = |k: &str| m[k].as_str().unwrap().to_string();
    let list = |k: &str| {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    eprintln!("credsgen: reference {}", s("reference"));

    let loaded = [
        (
            "identity file",
            IdentityFile::from_path(s("identity_file")).load().unwrap(),
            true,
        ),
        (
            "profile",
            Profile::new(s("profile_dir"), None).load().unwrap(),
            true,
        ),
        (
            "key pair",
            KeyPair::new(s("cert_file"), s("key_file"), s("ca_file"))
                .load()
                .unwrap(),
            false,
        ),
    ];
    for (what, mat, has_ssh) in loaded {
        let id = mat.identity.as_ref().unwrap();
        assert_eq!(id.username, s("user"), "{what}");
        // Multi-valued subject attributes come in DER SET OF order (Go sorts them too).
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(sorted(id.groups.clone()), sorted(list("roles")), "{what}");
        assert_eq!(
            sorted(id.principals.clone()),
            sorted(list("logins")),
            "{what}"
        );
        assert_eq!(id.teleport_cluster, s("cluster"), "{what}");
        assert_eq!(id.route_to_cluster, s("cluster"), "{what}");
        assert_eq!(id.traits["logins"], list("logins"), "{what}");
        assert_eq!(
            rfc3339(mat.tls_validity.unwrap().not_after),
            s("not_after"),
            "{what}"
        );
        assert_eq!(
            rfc3339(mat.tls_validity.unwrap().not_before),
            s("not_before"),
            "{what}"
        );
        mat.check_time(SystemTime::now()).unwrap();
        assert_eq!(mat.ssh.is_some(), has_ssh, "{what}");
        if let Some(ssh) = &mat.ssh {
            assert_eq!(ssh.user, list("logins")[0], "{what}");
            assert_eq!(ssh.host_cas.len(), 1, "{what}");
            let sid = SshIdentity::from_certificate(&ssh.certificate, what).unwrap();
            assert_eq!(sid.roles, list("roles"), "{what}");
            assert_eq!(sid.route_to_cluster, s("cluster"), "{what}");
        }
    }
    let profile = Profile::new(s("profile_dir"), None).load().unwrap();
    assert_eq!(
        profile.proxy_addr.as_deref(),
        Some(format!("{}:3080", s("proxy")).as_str())
    );
    // The CA that the identity file trusts is the one credsgen made.
    let bundle = IdentityFile::from_path(s("identity_file"))
        .read_bundle()
        .unwrap();
    let ca = tp_creds::pem::parse_all(&bundle.tls_cas.concat(), "cas").unwrap();
    assert_eq!(hex::encode(&ca[0].der), s("ca_cert_der_hex"));
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn teleport_reads_what_tp_writes() {
    for alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa { bits: 2048 },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = self_signed_ca("example.com", &ca_key, now() - 3600, now() + 86400).unwrap();
        let ssh_ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let host_ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let key = PrivateKey::generate(alg).unwrap();
        let (nb, na) = (now() - 60, now() + 3600);
        let mut id = TlsIdentity::user(
            "bob",
            vec!["access".into(), "auditor".into()],
            "example.com",
        );
        id.principals = vec!["bob".into(), "ops".into()];
        let tls = X509Signer::new(&ca, &ca_key)
            .unwrap()
            .issue(&id, &key.public_key_spki_der().unwrap(), nb, na, &[])
            .unwrap();
        let mut sid = SshIdentity::user("bob", id.groups.clone(), "example.com");
        sid.logins = id.principals.clone();
        let ssh = sid
            .sign(
                &key.ssh_public_key().unwrap(),
                &ssh_ca,
                nb as u64,
                na as u64,
            )
            .unwrap();
        let mut b = IdentityBundle::new(key);
        b.tls_cert = Some(tp_creds::pem::encode("CERTIFICATE", &tls));
        b.ssh_cert = Some(format!("{}\n", ssh.to_openssh().unwrap()));
        b.ssh_cas = vec![format!(
            "@cert-authority proxy.example.com,example.com,*.example.com {} type=host\n",
            host_ca.public_key().to_openssh().unwrap()
        )];
        b.tls_cas = vec![tp_creds::pem::encode("CERTIFICATE", &ca)];

        let id_path = dir.path().join("identity");
        b.write(Format::File, &id_path).unwrap();
        let kp = b.write(Format::Tls, &dir.path().join("out")).unwrap();
        let tsh = dir.path().join("tsh");
        write_profile(
            &tsh,
            &ProfileConfig::new("proxy.example.com:3080", "bob", "example.com"),
            &b,
            true,
        )
        .unwrap();

        let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
        let runs: [(&str, Vec<String>); 3] = [
            ("identity", vec![p(&id_path)]),
            ("profile", vec![p(&tsh), "proxy.example.com".into()]),
            ("keypair", vec![p(&kp[1]), p(&kp[0]), p(&kp[2])]),
        ];
        for (loader, args) in runs {
            let mut all = vec![loader];
            all.extend(args.iter().map(String::as_str));
            let out = tp_tests::run_go("credsload", &all);
            let r: serde_json::Value = serde_json::from_str(&out).expect("credsload prints JSON");
            assert_eq!(r["user"], "bob", "{alg} {loader}: {r}");
            assert_eq!(
                r["roles"],
                serde_json::json!(["access", "auditor"]),
                "{alg} {loader}"
            );
            assert_eq!(
                r["logins"],
                serde_json::json!(["bob", "ops"]),
                "{alg} {loader}"
            );
            assert_eq!(r["not_after"], rfc3339(na), "{alg} {loader}");
            assert_eq!(r["server_name"], "teleport.cluster.local", "{alg} {loader}");
            assert!(
                r["alpn"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("h2")),
                "{alg} {loader}"
            );
            assert_eq!(r["trusted_cas"], 1, "{alg} {loader}");
            if loader != "keypair" {
                // Go's SSH config: user = the first principal.
                assert_eq!(r["ssh_user"], "bob", "{alg} {loader}");
            }
            eprintln!("reference {loader} loader read tp's {alg} credentials");
        }
    }
}

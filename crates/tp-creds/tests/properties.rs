//! Properties: identity encode→decode is the identity; parsers of untrusted input never
//! panic, whatever the bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tp_creds::{IdentityBundle, KeyAlgorithm, PrivateKey, SshIdentity, TlsIdentity};
use x509_parser::prelude::FromDer as _;

fn text() -> impl Strategy<Value = String> {
    // Unicode, spaces, punctuation, empty strings.
    prop_oneof![Just(String::new()), "[a-z0-9._-]{1,12}", "\\PC{1,10}"]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-zA-Z0-9_*@.-]{1,16}|\\PC{1,8}", 0..4)
}

fn traits() -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
    prop::collection::btree_map(
        "[a-z_]{1,8}|\\PC{1,6}",
        prop::collection::vec(text(), 0..3),
        0..3,
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tls_identity_round_trips(user in "[a-z][a-z0-9.@-]{0,20}|\\PC{1,12}", roles in names(), logins in names(), usage in names(),
                                route in text(), traits in traits(), cluster in "[a-z]{1,10}\\.[a-z]{2,4}",
                                extra in prop::collection::vec(("1\\.3\\.9999\\.[12]\\.(1[0-9]|[1-9])", "\\PC{1,10}"), 0..3)) {
        let extra: Vec<(String, String)> = extra.into_iter().filter(|(o, _)| o != tp_creds::identity::oids::TELEPORT_CLUSTER).collect();
        let mut id = TlsIdentity::user(user, roles, cluster);
        id.principals = logins;
        id.usage = usage;
        id.route_to_cluster = route;
        id.traits = traits;
        id.attributes = extra;
        let der = id.subject_der().unwrap();
        let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let back = TlsIdentity::from_name(&name, "prop").unwrap();
        // Traits with empty value lists survive; multi-valued attributes compare as sets.
        prop_assert_eq!(&back.username, &id.username);
        prop_assert_eq!(sorted(back.groups.clone()), sorted(id.groups.clone()));
        prop_assert_eq!(sorted(back.principals.clone()), sorted(id.principals.clone()));
        prop_assert_eq!(sorted(back.usage.clone()), sorted(id.usage.clone()));
        prop_assert_eq!(&back.route_to_cluster, &id.route_to_cluster);
        prop_assert_eq!(&back.traits, &id.traits);
        prop_assert_eq!(&back.teleport_cluster, &id.teleport_cluster);
        prop_assert_eq!(&back.attributes, &id.attributes);
    }

    #[test]
    fn ssh_identity_round_trips(user in "[a-z][a-z0-9.@-]{0,20}", roles in names(), logins in prop::collection::vec("[a-z][a-z0-9_-]{0,10}", 0..4),
                                traits in traits(), route in text()) {
        let ca = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap().to_ssh().unwrap();
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let mut id = SshIdentity::user(user, roles, route);
        id.logins = logins;
        id.traits = traits;
        let cert = id.sign(&key.ssh_public_key().unwrap(), &ca, 0, 4_000_000_000).unwrap();
        let back = SshIdentity::from_certificate(&cert, "prop").unwrap();
        prop_assert_eq!(back.username, id.username);
        prop_assert_eq!(back.logins, id.logins);
        prop_assert_eq!(back.roles, id.roles);
        prop_assert_eq!(back.traits, id.traits);
        prop_assert_eq!(back.route_to_cluster, id.route_to_cluster);
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = IdentityBundle::parse(&text, "prop");
        let _ = tp_creds::pem::parse_all(&text, "prop");
        let _ = PrivateKey::from_pem(&text, "prop");
        let _ = tp_creds::cert::parse_ssh_cert(&text, "prop");
        let _ = TlsIdentity::from_certificate_der(&bytes, "prop");
        let _: Result<tp_creds::ProfileConfig, _> = serde_saphyr::from_str(&text);
    }

    #[test]
    fn pem_framed_garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..512),
                                       label in prop_oneof![Just("PRIVATE KEY"), Just("RSA PRIVATE KEY"), Just("EC PRIVATE KEY"), Just("OPENSSH PRIVATE KEY"), Just("CERTIFICATE")]) {
        let pem = tp_creds::pem::encode(label, &body);
        let _ = PrivateKey::from_pem(&pem, "prop");
        let _ = IdentityBundle::parse(&format!("{pem}{pem}"), "prop");
        if let Ok(blocks) = tp_creds::pem::parse_all(&pem, "prop") {
            let _ = TlsIdentity::from_certificate_der(&blocks[0].der, "prop");
        }
    }
}

//! Property tests through the public sans-IO API: arbitrary bytes at every stage and
//! arbitrary messages after authentication end in `Ok` or a clean `Err`, never a panic.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use common::*;
use proptest::prelude::*;
use tp_ssh::{ClientConfig, Connection, ServerConfig};

fn configs() -> &'static (Arc<ClientConfig>, Arc<ServerConfig>) {
    static C: OnceLock<(Arc<ClientConfig>, Arc<ServerConfig>)> = OnceLock::new();
    C.get_or_init(|| {
        let pki = Pki::new();
        (
            Arc::new(pki.client(&ed25519(), &CertSpec::user(&["alice"]))),
            Arc::new(pki.server(&ed25519(), &CertSpec::host(&["h"]))),
        )
    })
}

fn authenticated() -> (Connection, Connection) {
    let (c, s) = configs();
    let now = Instant::now();
    let mut c = Connection::client(c.clone(), now);
    let mut s = Connection::server(s.clone(), Some("127.0.0.1".parse().unwrap()), now);
    loop {
        let mut moved = false;
        if let Some(b) = c.poll_transmit() {
            moved = true;
            s.handle_input(&b, now).unwrap();
        }
        if let Some(b) = s.poll_transmit() {
            moved = true;
            c.handle_input(&b, now).unwrap();
        }
        if !moved {
            break;
        }
    }
    assert!(c.is_authenticated() && s.is_authenticated());
    (c, s)
}

proptest! {
    #[test]
    fn garbage_before_and_after_identification(bytes in proptest::collection::vec(any::<u8>(), 0..4096), with_version in any::<bool>()) {
        let (c, s) = configs();
        let now = Instant::now();
        let mut srv = Connection::server(s.clone(), None, now);
        let mut cli = Connection::client(c.clone(), now);
        let mut input = if with_version { b"SSH-2.0-fuzz\r\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let _ = srv.handle_input(&input, now);
        let _ = cli.handle_input(&input, now);
        let _ = srv.poll_transmit();
        let _ = srv.handle_timeout(now);
    }

    #[test]
    fn any_message_after_auth(ty in prop_oneof![0u8..=255, 80u8..=100], body in proptest::collection::vec(any::<u8>(), 0..256), open_first in any::<bool>(), channel0 in any::<bool>()) {
        let (mut c, mut s) = authenticated();
        if open_first {
            c.open_channel("x", b"").unwrap();
        }
        let mut p = vec![ty];
        if channel0 {
            // Aim at the open channel so the per-channel parsers run.
            p.extend_from_slice(&[0, 0, 0, 0]);
        }
        p.extend_from_slice(&body);
        c.inject_payload(&p);
        for _ in 0..4 {
            if let Some(b) = c.poll_transmit() {
                let _ = s.handle_input(&b, Instant::now());
            }
            while let Some(ev) = s.poll_event() {
                if let tp_ssh::Event::ChannelOpenRequest { id, .. } = ev {
                    let _ = s.accept_channel(id);
                }
            }
            if let Some(b) = s.poll_transmit() {
                let _ = c.handle_input(&b, Instant::now());
            }
            while c.poll_event().is_some() {}
        }
    }
}

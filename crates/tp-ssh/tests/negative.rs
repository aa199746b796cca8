//! Negative tests: each misbehaviour ends in a clean error, never a panic.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use ssh_key::certificate::CertType;
use tp_ssh::{ClientConfig, Connection, Error, Event, KeyPair, ServerConfig};

async fn expect_auth_failure(c: ClientConfig, s: ServerConfig) {
    let (c, s) = pair(c, s).await;
    assert!(matches!(c, Err(Error::Auth(_))), "client: {c:?}");
    assert!(s.is_err(), "server accepted");
}

#[tokio::test]
async fn untrusted_user_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let c = other.client(&ed25519(), &CertSpec::user(&["alice"]));
    let mut c = c;
    c.trusted_host_cas = pki
        .client(&ed25519(), &CertSpec::user(&["alice"]))
        .trusted_host_cas;
    expect_auth_failure(c, pki.server(&ed25519(), &CertSpec::host(&["h"]))).await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_user_certs() {
    let pki = Pki::new();
    let mut spec = CertSpec::user(&["alice"]);
    spec.valid_after = now() - 7200;
    spec.valid_before = now() - 3600;
    expect_auth_failure(
        pki.client(&ed25519(), &spec),
        pki.server(&ed25519(), &CertSpec::host(&["h"])),
    )
    .await;
    let mut spec = CertSpec::user(&["alice"]);
    spec.valid_after = now() + 3600;
    spec.valid_before = now() + 7200;
    expect_auth_failure(
        pki.client(&ed25519(), &spec),
        pki.server(&ed25519(), &CertSpec::host(&["h"])),
    )
    .await;
}

#[tokio::test]
async fn wrong_principal_and_empty_principals() {
    let pki = Pki::new();
    let s = || pki.server(&ed25519(), &CertSpec::host(&["h"]));
    expect_auth_failure(pki.client(&ed25519(), &CertSpec::user(&["bob"])), s()).await;
    expect_auth_failure(pki.client(&ed25519(), &CertSpec::user(&[])), s()).await;
}

#[tokio::test]
async fn host_cert_used_as_user_cert() {
    let pki = Pki::new();
    let mut spec = CertSpec::user(&["alice"]);
    spec.cert_type = CertType::Host;
    expect_auth_failure(
        pki.client(&ed25519(), &spec),
        pki.server(&ed25519(), &CertSpec::host(&["h"])),
    )
    .await;
}

#[tokio::test]
async fn critical_options() {
    let pki = Pki::new();
    let s = || pki.server(&ed25519(), &CertSpec::host(&["h"]));
    for (k, v) in [
        ("force-command", "/bin/true"),
        ("my-unknown-option", ""),
        ("source-address", "10.0.0.0/8"),
    ] {
        let mut spec = CertSpec::user(&["alice"]);
        spec.critical = vec![(k.into(), v.into())];
        expect_auth_failure(pki.client(&ed25519(), &spec), s()).await;
    }
    // A source-address that allows the peer is accepted.
    let mut spec = CertSpec::user(&["alice"]);
    spec.critical = vec![(
        "source-address".into(),
        "192.168.0.0/16,127.0.0.1/32".into(),
    )];
    let (c, s) = pair(pki.client(&ed25519(), &spec), s()).await;
    c.unwrap();
    let (_, info) = s.unwrap();
    assert_eq!(info.user, "alice");
    assert!(info.certificate.is_some());
}

#[tokio::test]
async fn signature_by_the_wrong_key() {
    let pki = Pki::new();
    let real = ed25519();
    let c = cert(&pki.user_ca, real.public_key(), &CertSpec::user(&["alice"]));
    let kp = KeyPair::new(&ed25519())
        .unwrap()
        .with_certificate_unchecked(c);
    let mut cfg = ClientConfig::new("alice", Arc::new(kp));
    cfg.trusted_host_cas = vec![tp_ssh::fingerprint(pki.host_ca.public_key())];
    expect_auth_failure(cfg, pki.server(&ed25519(), &CertSpec::host(&["h"]))).await;
}

#[tokio::test]
async fn host_key_checks() {
    let pki = Pki::new();
    let c = || pki.client(&ed25519(), &CertSpec::user(&["alice"]));
    // Untrusted host CA.
    let other = Pki::new();
    let (r, _) = pair(c(), other.server(&ed25519(), &CertSpec::host(&["h"]))).await;
    assert!(matches!(r, Err(Error::HostKey(_))), "{r:?}");
    // Wrong host principal.
    let mut cc = c();
    cc.host_principal = Some("proxy.example.com".into());
    let (r, _) = pair(cc, pki.server(&ed25519(), &CertSpec::host(&["other"]))).await;
    assert!(matches!(r, Err(Error::HostKey(_))), "{r:?}");
    // Right host principal.
    let mut cc = c();
    cc.host_principal = Some("proxy.example.com".into());
    let (r, _) = pair(
        cc,
        pki.server(&ed25519(), &CertSpec::host(&["proxy.example.com"])),
    )
    .await;
    r.unwrap();
    // A user certificate presented as host certificate.
    let mut spec = CertSpec::host(&["h"]);
    spec.cert_type = CertType::User;
    let (r, _) = pair(c(), pki.server(&ed25519(), &spec)).await;
    assert!(matches!(r, Err(Error::HostKey(_))), "{r:?}");
    // Expired host certificate.
    let mut spec = CertSpec::host(&["h"]);
    spec.valid_before = now() - 10;
    spec.valid_after = now() - 100;
    let (r, _) = pair(c(), pki.server(&ed25519(), &spec)).await;
    assert!(matches!(r, Err(Error::HostKey(_))), "{r:?}");
    // Plain host key not in the known list.
    let host = ed25519();
    let s = ServerConfig::new(
        Arc::new(KeyPair::new(&host).unwrap()),
        vec![tp_ssh::fingerprint(pki.user_ca.public_key())],
    );
    let mut cc = c();
    cc.known_host_keys = vec![ed25519().public_key().clone()];
    let (r, _) = pair(cc, s.clone()).await;
    assert!(r.is_err(), "{r:?}");
    let mut cc = c();
    cc.known_host_keys = vec![host.public_key().clone()];
    let (r, _) = pair(cc, s).await;
    r.unwrap();
}

// ---- sans-IO level --------------------------------------------------------------------

struct Pair {
    c: Connection,
    s: Connection,
    ce: Option<Error>,
    se: Option<Error>,
}

impl Pair {
    fn new(pki: &Pki) -> Self {
        Self::with(pki, |_| {}, |_| {})
    }

    fn with(
        pki: &Pki,
        fc: impl FnOnce(&mut ClientConfig),
        fs: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
        fc(&mut c);
        let mut s = pki.server(&ed25519(), &CertSpec::host(&["h"]));
        fs(&mut s);
        let now = Instant::now();
        Self {
            c: Connection::client(Arc::new(c), now),
            s: Connection::server(Arc::new(s), Some("127.0.0.1".parse().unwrap()), now),
            ce: None,
            se: None,
        }
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(b) = self.c.poll_transmit() {
                moved = true;
                if let Err(e) = self.s.handle_input(&b, Instant::now()) {
                    self.se.get_or_insert(e);
                }
            }
            if let Some(b) = self.s.poll_transmit() {
                moved = true;
                if let Err(e) = self.c.handle_input(&b, Instant::now()) {
                    self.ce.get_or_insert(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn authenticated(pki: &Pki) -> Self {
        let mut p = Self::new(pki);
        p.pump();
        assert!(p.c.is_authenticated() && p.s.is_authenticated());
        while p.c.poll_event().is_some() {}
        while p.s.poll_event().is_some() {}
        p
    }

    fn open_channel(&mut self) -> (tp_ssh::ChannelId, tp_ssh::ChannelId) {
        let cid = self.c.open_channel("x", b"").unwrap();
        self.pump();
        let sid = loop {
            match self.s.poll_event() {
                Some(Event::ChannelOpenRequest { id, .. }) => break id,
                Some(_) => {}
                None => panic!("no open request"),
            }
        };
        self.s.accept_channel(sid).unwrap();
        self.pump();
        (cid, sid)
    }
}

fn plain_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = 1 + payload.len() + pad;
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.push(pad as u8);
    v.extend_from_slice(payload);
    v.extend(std::iter::repeat_n(0u8, pad));
    v
}

#[test]
fn strict_kex_rejects_ignore_inserted_before_newkeys() {
    let pki = Pki::new();
    let mut p = Pair::new(&pki);
    // Client → server: version + KEXINIT (+ nothing else yet).
    let first = p.c.poll_transmit().unwrap();
    p.s.handle_input(&first, Instant::now()).unwrap();
    // Terrapin: an attacker inserts IGNORE after KEXINIT.
    let r =
        p.s.handle_input(&plain_packet(&[2, 0, 0, 0, 0]), Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    assert!(p.s.is_closed());
    // Same towards the client.
    let mut p = Pair::new(&pki);
    let first = p.s.poll_transmit().unwrap();
    p.c.handle_input(&first, Instant::now()).unwrap();
    let r =
        p.c.handle_input(&plain_packet(&[2, 0, 0, 0, 0]), Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    // An IGNORE sent *before* KEXINIT is also fatal once strict KEX is negotiated.
    let mut p = Pair::new(&pki);
    let first = p.c.poll_transmit().unwrap();
    let line_end = first.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut forged = first[..line_end].to_vec();
    forged.extend(plain_packet(&[2, 0, 0, 0, 0]));
    forged.extend_from_slice(&first[line_end..]);
    let r = p.s.handle_input(&forged, Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}

#[test]
fn strict_kex_negotiated_and_sequence_numbers_reset() {
    let pki = Pki::new();
    let p = Pair::authenticated(&pki);
    assert!(p.c.is_strict_kex() && p.s.is_strict_kex());
}

#[test]
fn oversized_packet_length() {
    let pki = Pki::new();
    let mut p = Pair::new(&pki);
    let mut bytes = b"SSH-2.0-evil\r\n".to_vec();
    bytes.extend_from_slice(&[0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0]);
    let r = p.s.handle_input(&bytes, Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    // After keys are in place, too.
    let mut p = Pair::authenticated(&pki);
    let r = p.s.handle_input(&[0xff; 64], Instant::now());
    assert!(r.is_err());
}

#[test]
fn bad_tag_after_kex() {
    for _ in 0..3 {
        let pki = Pki::new();
        let mut p = Pair::authenticated(&pki);
        p.c.send_global_request("x", true, b"hello").unwrap();
        let mut b = p.c.poll_transmit().unwrap();
        let n = b.len();
        b[n - 3] ^= 0x40;
        let r = p.s.handle_input(&b, Instant::now());
        assert_eq!(r, Err(Error::BadTag));
        assert!(p.s.is_closed());
    }
}

#[test]
fn channel_data_before_auth() {
    let pki = Pki::new();
    let mut p = Pair::new(&pki);
    // Run the key exchange only: pump until the client reports it.
    loop {
        let b = p.c.poll_transmit();
        if let Some(b) = b {
            p.s.handle_input(&b, Instant::now()).unwrap();
        }
        if let Some(b) = p.s.poll_transmit() {
            p.c.handle_input(&b, Instant::now()).unwrap();
        }
        if std::iter::from_fn(|| p.c.poll_event()).any(|e| matches!(e, Event::KeysExchanged { .. }))
        {
            break;
        }
    }
    let mut data = vec![94u8, 0, 0, 0, 0, 0, 0, 0, 2];
    data.extend_from_slice(b"hi");
    p.c.inject_payload(&data);
    p.pump();
    assert!(matches!(p.se, Some(Error::Protocol(_))), "{:?}", p.se);
    assert!(!p.s.is_authenticated());
}

#[test]
fn window_overrun_and_oversized_data() {
    let pki = Pki::new();
    let mut p = Pair::with(&pki, |_| {}, |s| s.transport.window_size = 1000);
    p.pump();
    let (_cid, sid) = p.open_channel();
    assert_eq!(sid.0, 0);
    let mut data = vec![94u8, 0, 0, 0, 0, 0, 0, 0x07, 0xd0];
    data.extend_from_slice(&[1u8; 2000]);
    p.c.inject_payload(&data);
    p.pump();
    assert!(
        matches!(&p.se, Some(Error::Protocol(m)) if m.contains("window")),
        "{:?}",
        p.se
    );
    // Bigger than the maximum packet size.
    let mut p = Pair::authenticated(&pki);
    p.open_channel();
    let mut data = vec![94u8, 0, 0, 0, 0, 0, 1, 0, 0];
    data.extend_from_slice(&[1u8; 65536]);
    p.c.inject_payload(&data);
    p.pump();
    assert!(matches!(&p.se, Some(Error::Protocol(_))), "{:?}", p.se);
}

#[test]
fn window_adjust_overflow_and_unknown_channel() {
    let pki = Pki::new();
    let mut p = Pair::authenticated(&pki);
    p.open_channel();
    p.c.inject_payload(&[93, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    p.pump();
    assert!(
        matches!(&p.se, Some(Error::Protocol(m)) if m.contains("overflow")),
        "{:?}",
        p.se
    );
    let mut p = Pair::authenticated(&pki);
    p.c.inject_payload(&[96, 0, 0, 0, 9]);
    p.pump();
    assert!(matches!(&p.se, Some(Error::Protocol(_))), "{:?}", p.se);
}

#[test]
fn unexpected_replies_are_fatal() {
    let pki = Pki::new();
    let mut p = Pair::authenticated(&pki);
    p.c.inject_payload(&[81]);
    p.pump();
    assert!(matches!(&p.se, Some(Error::Protocol(_))), "{:?}", p.se);
}

#[test]
fn bounded_auth_attempts() {
    let pki = Pki::new();
    let mut p = Pair::with(&pki, |_| {}, |s| s.max_auth_attempts = 3);
    // Run the handshake but swallow the client's own auth request.
    let mut req = Vec::new();
    req.push(50u8);
    for s in ["alice", "ssh-connection", "publickey"] {
        req.extend_from_slice(&(s.len() as u32).to_be_bytes());
        req.extend_from_slice(s.as_bytes());
    }
    req.push(0);
    for s in ["ssh-ed25519-cert-v01@openssh.com", "garbage"] {
        req.extend_from_slice(&(s.len() as u32).to_be_bytes());
        req.extend_from_slice(s.as_bytes());
    }
    p.pump();
    assert!(p.s.is_authenticated());
    let mut p2 = Pair::with(&pki, |_| {}, |s| s.max_auth_attempts = 3);
    // Exchange keys, then inject bad requests before the real one is answered.
    let mut failures = 0;
    for _ in 0..10 {
        let b = p2.c.poll_transmit();
        if let Some(b) = b {
            let _ = p2.s.handle_input(&b, Instant::now());
        }
        if let Some(b) = p2.s.poll_transmit() {
            let _ = p2.c.handle_input(&b, Instant::now());
        }
        if std::iter::from_fn(|| p2.c.poll_event())
            .any(|e| matches!(e, Event::KeysExchanged { .. }))
        {
            for _ in 0..5 {
                p2.c.inject_payload(&req);
                failures += 1;
            }
            break;
        }
    }
    assert_eq!(failures, 5);
    let b = p2.c.poll_transmit().unwrap();
    let r = p2.s.handle_input(&b, Instant::now());
    assert!(matches!(r, Err(Error::Auth(_))), "{r:?}");
}

#[test]
fn banner_flood_and_bad_identification() {
    let pki = Pki::new();
    // A server sending endless lines before its identification.
    let mut p = Pair::new(&pki);
    let line = b"welcome to the server, have a line\r\n".repeat(100);
    let mut res = Ok(());
    for _ in 0..100 {
        res = p.c.handle_input(&line, Instant::now());
        if res.is_err() {
            break;
        }
    }
    assert!(matches!(res, Err(Error::Protocol(_))), "{res:?}");
    // One endless line.
    let mut p = Pair::new(&pki);
    let r = p.c.handle_input(&[b'a'; 5000], Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    // A client must start with its identification.
    let mut p = Pair::new(&pki);
    let r = p.s.handle_input(b"hello\r\n", Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    // SSH-1 is refused.
    let mut p = Pair::new(&pki);
    let r = p.s.handle_input(b"SSH-1.5-old\r\n", Instant::now());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}

#[test]
fn pre_auth_deadline() {
    let pki = Pki::new();
    let mut p = Pair::new(&pki);
    let later = Instant::now() + std::time::Duration::from_secs(31);
    assert!(p.s.poll_timeout().unwrap() <= later);
    let r = p.s.handle_timeout(later);
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
}

#[test]
fn idle_deadline() {
    let pki = Pki::new();
    let mut p = Pair::with(
        &pki,
        |c| c.transport.idle_timeout = Some(std::time::Duration::from_secs(5)),
        |_| {},
    );
    p.pump();
    assert!(p.c.is_authenticated());
    let r =
        p.c.handle_timeout(Instant::now() + std::time::Duration::from_secs(6));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
}

#[test]
fn channel_cap() {
    let pki = Pki::new();
    let mut p = Pair::with(&pki, |_| {}, |s| s.transport.max_channels = 2);
    p.pump();
    for _ in 0..3 {
        p.c.open_channel("x", b"").unwrap();
    }
    p.pump();
    let opens = std::iter::from_fn(|| p.s.poll_event())
        .filter(|e| matches!(e, Event::ChannelOpenRequest { .. }))
        .count();
    assert_eq!(opens, 2);
    let failed = std::iter::from_fn(|| p.c.poll_event())
        .filter(|e| matches!(e, Event::ChannelOpenFailed { reason: 4, .. }))
        .count();
    assert_eq!(failed, 1);
}

#[test]
fn keepalives_go_out_when_quiet_and_a_silent_peer_is_dropped() {
    use std::time::Duration;
    let pki = Pki::new();
    let mut p = Pair::with(
        &pki,
        |_| {},
        |s| s.transport.keepalive_interval = Some(Duration::from_secs(10)),
    );
    p.pump();
    assert!(p.s.is_authenticated());
    while p.s.poll_event().is_some() {}
    while p.c.poll_event().is_some() {}
    let t0 = Instant::now();
    assert!(p.s.poll_timeout().unwrap() <= t0 + Duration::from_secs(10));

    // Quiet for the interval: a keepalive goes out, and an application request after
    // it. The client answers both (failure, as OpenSSH does to keepalive@openssh.com);
    // the keepalive's reply is the server's own, the other reaches the application.
    let t1 = t0 + Duration::from_secs(11);
    p.s.handle_timeout(t1).unwrap();
    p.s.send_global_request("test@example.com", true, b"")
        .unwrap();
    let out = p.s.poll_transmit().expect("the keepalive and the request");
    p.c.handle_input(&out, t1).unwrap();
    let replies = p.c.poll_transmit().expect("the client's replies");
    p.s.handle_input(&replies, t1).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| p.s.poll_event()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        events[0],
        Event::GlobalReply { success: false, .. }
    ));

    // Then the client falls silent: a keepalive each interval, and after three
    // unanswered the connection fails, saying why.
    let mut t = t1 + Duration::from_secs(11);
    for _ in 0..3 {
        p.s.handle_timeout(t).unwrap();
        assert!(p.s.poll_transmit().is_some(), "a keepalive");
        t += Duration::from_secs(10);
    }
    let r = p.s.handle_timeout(t);
    assert!(
        matches!(&r, Err(Error::Timeout(m)) if m.contains("no answer to 3 keepalives")),
        "{r:?}"
    );
}

#[test]
fn a_keepalive_due_during_a_rekey_waits_for_it_without_spinning() {
    use std::time::Duration;
    let pki = Pki::new();
    let mut p = Pair::with(
        &pki,
        |_| {},
        |s| s.transport.keepalive_interval = Some(Duration::from_secs(10)),
    );
    p.pump();
    let t0 = Instant::now();
    // The server starts a rekey; the client has not answered when a keepalive is due.
    p.s.rekey(t0).unwrap();
    let _ = p.s.poll_transmit();
    let t1 = t0 + Duration::from_secs(11);
    p.s.handle_timeout(t1).unwrap();
    // No keepalive goes out mid-KEX, and the next deadline is not already past (a
    // driver would call handle_timeout in a loop).
    assert!(p.s.poll_transmit().is_none());
    assert!(p.s.poll_timeout().unwrap() > t1);
}

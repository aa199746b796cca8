//! The sans-IO connection: bytes in ([`Connection::handle_input`]), bytes out
//! ([`Connection::poll_transmit`]), events out ([`Connection::poll_event`]), time in
//! ([`Connection::handle_timeout`]). Both roles share this type.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ssh_key::Certificate;

use crate::cipher::{MAX_PACKET_LEN, Opener, Sealer};
use crate::config::{ClientConfig, ServerConfig, TransportConfig};
use crate::error::{Error, disconnect};
use crate::kex::{self, Ephemeral, HashInput, KexInit, Negotiated};
use crate::keys::{self, CERT_ALGS, PLAIN_ALGS};
use crate::msg;
use crate::wire::{Reader, Writer};

/// Longest identification or pre-identification line we accept (bytes, with CR LF).
const MAX_BANNER_LINE: usize = 1024;
/// Most bytes a server may send before its identification line.
const MAX_BANNER_TOTAL: usize = 64 * 1024;
/// `SSH_OPEN_RESOURCE_SHORTAGE`
const OPEN_RESOURCE_SHORTAGE: u32 = 4;
/// Largest data chunk we put in one CHANNEL_DATA.
const MAX_SEND_CHUNK: u32 = 64 * 1024;

/// A channel, named by our local channel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

/// Who authenticated, as reported by [`Event::Authenticated`].
#[derive(Debug, Clone)]
pub struct AuthInfo {
    /// The user name that logged in.
    pub user: String,
    /// On the server, the user certificate that was accepted.
    pub certificate: Option<Box<Certificate>>,
}

/// Something that happened on the connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A key exchange completed (`count` = 1 for the initial one).
    KeysExchanged {
        /// How many key exchanges have completed.
        count: u32,
        /// Whether strict KEX is in force.
        strict: bool,
    },
    /// User authentication succeeded; channels may now be used.
    Authenticated(AuthInfo),
    /// The peer wants to open a channel: answer with [`Connection::accept_channel`] or
    /// [`Connection::reject_channel`].
    ChannelOpenRequest {
        /// The channel.
        id: ChannelId,
        /// The channel type, any name.
        kind: String,
        /// Type-specific data after the standard fields.
        extra: Bytes,
    },
    /// A channel we opened was confirmed.
    ChannelOpenConfirmed {
        /// The channel.
        id: ChannelId,
    },
    /// A channel we opened was refused (the channel is gone).
    ChannelOpenFailed {
        /// The channel.
        id: ChannelId,
        /// The reason code.
        reason: u32,
        /// The peer's description.
        description: String,
    },
    /// Data arrived. Call [`Connection::consume`] once it is processed to reopen the window.
    ChannelData {
        /// The channel.
        id: ChannelId,
        /// The bytes.
        data: Bytes,
    },
    /// Extended data (code 1: stderr) arrived; also call [`Connection::consume`].
    ChannelExtendedData {
        /// The channel.
        id: ChannelId,
        /// The data type code.
        code: u32,
        /// The bytes.
        data: Bytes,
    },
    /// The peer's window for this channel grew: more data can be sent.
    ChannelWindow {
        /// The channel.
        id: ChannelId,
    },
    /// The peer will send no more data.
    ChannelEof {
        /// The channel.
        id: ChannelId,
    },
    /// The channel is closed in both directions and its number is freed.
    ChannelClosed {
        /// The channel.
        id: ChannelId,
    },
    /// A channel request of any name. If `want_reply`, answer with
    /// [`Connection::reply_channel_request`] (answers are sent in request order).
    ChannelRequest {
        /// The channel.
        id: ChannelId,
        /// The request name.
        name: String,
        /// Whether the peer waits for an answer.
        want_reply: bool,
        /// The raw request-specific bytes.
        payload: Bytes,
    },
    /// The answer to one of our channel requests (in the order they were sent).
    ChannelReply {
        /// The channel.
        id: ChannelId,
        /// `CHANNEL_SUCCESS` or `CHANNEL_FAILURE`.
        success: bool,
    },
    /// The answer to one of our global requests (in the order they were sent).
    GlobalReply {
        /// `REQUEST_SUCCESS` or `REQUEST_FAILURE`.
        success: bool,
        /// Response-specific data.
        payload: Bytes,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum ChanState {
    /// We sent CHANNEL_OPEN.
    Opening,
    /// The peer sent CHANNEL_OPEN; the application has not answered.
    PendingAccept,
    Open,
}

#[derive(Debug)]
struct Chan {
    remote_id: u32,
    state: ChanState,
    local_window: u32,
    consumed: u32,
    remote_window: u32,
    remote_max_packet: u32,
    sent_eof: bool,
    recv_eof: bool,
    sent_close: bool,
    /// Requests from the peer with want_reply, not answered yet.
    replies_owed: u32,
    /// Our requests with want_reply, not answered yet.
    replies_awaited: u32,
}

#[derive(Debug)]
enum Role {
    Client(Arc<ClientConfig>),
    Server(Arc<ServerConfig>, Option<IpAddr>),
}

#[derive(Debug, PartialEq, Eq)]
enum ClientAuth {
    NotStarted,
    ServiceRequested,
    Requested,
}

/// State of one key exchange in progress.
#[derive(Debug, Default)]
struct KexRound {
    ours: Option<Vec<u8>>,
    theirs: Option<Vec<u8>>,
    negotiated: Option<Negotiated>,
    ephemeral: Option<Ephemeral>,
    /// Keys to install at NEWKEYS: (ours-out, ours-in).
    keys: Option<(DirKeys, DirKeys)>,
    sent_newkeys: bool,
    recv_newkeys: bool,
}

#[derive(Debug)]
struct DirKeys {
    alg: crate::cipher::CipherAlg,
    key: Vec<u8>,
    iv: Vec<u8>,
}

/// One SSH connection, client or server, without I/O.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    cfg: TransportConfig,
    our_version: Vec<u8>,
    peer_version: Option<Vec<u8>>,
    banner_bytes: usize,
    inbuf: BytesMut,
    out: Vec<u8>,
    sealer: Sealer,
    opener: Opener,
    kex: Option<KexRound>,
    kex_count: u32,
    session_id: Option<Vec<u8>>,
    strict: bool,
    peer_kexinit_first: bool,
    packets_received: u64,
    skip_guess: bool,
    queued: VecDeque<Vec<u8>>,
    bytes_since_kex: u64,
    kex_started_at: Instant,
    peer_ext_info: bool,
    server_sig_algs: Option<Vec<String>>,
    client_auth: ClientAuth,
    auth_failures: u32,
    authenticated: bool,
    auth_deadline: Instant,
    last_rx: Instant,
    channels: HashMap<u32, Chan>,
    next_id: u32,
    /// Who awaits each outstanding global-request reply, in order (replies come in the
    /// order of requests): `true` for our keepalives, `false` for the application.
    reply_owners: VecDeque<bool>,
    /// Keepalives sent since the last packet received.
    keepalives_unanswered: u32,
    /// When the last keepalive went out.
    last_keepalive: Instant,
    events: VecDeque<Event>,
    error: Option<Error>,
}

impl Connection {
    /// A client connection. `now` starts the pre-auth deadline.
    pub fn client(config: Arc<ClientConfig>, now: Instant) -> Self {
        let cfg = config.transport.clone();
        Self::new(Role::Client(config), cfg, now)
    }

    /// A server connection; `peer` is the client's address, used for the `source-address`
    /// critical option (a certificate with that option is refused when `peer` is `None`).
    pub fn server(config: Arc<ServerConfig>, peer: Option<IpAddr>, now: Instant) -> Self {
        let cfg = config.transport.clone();
        Self::new(Role::Server(config, peer), cfg, now)
    }

    fn new(role: Role, cfg: TransportConfig, now: Instant) -> Self {
        let our_version = format!("SSH-2.0-{}", cfg.software_version).into_bytes();
        let mut c = Self {
            role,
            our_version,
            peer_version: None,
            banner_bytes: 0,
            inbuf: BytesMut::with_capacity(4 * 1024),
            out: Vec::new(),
            sealer: Sealer::new(),
            opener: Opener::new(),
            kex: None,
            kex_count: 0,
            session_id: None,
            strict: false,
            peer_kexinit_first: false,
            packets_received: 0,
            skip_guess: false,
            queued: VecDeque::new(),
            bytes_since_kex: 0,
            kex_started_at: now,
            peer_ext_info: false,
            server_sig_algs: None,
            client_auth: ClientAuth::NotStarted,
            auth_failures: 0,
            authenticated: false,
            auth_deadline: now + cfg.auth_timeout,
            last_rx: now,
            channels: HashMap::new(),
            next_id: 0,
            reply_owners: VecDeque::new(),
            keepalives_unanswered: 0,
            last_keepalive: now,
            events: VecDeque::new(),
            error: None,
            cfg,
        };
        c.out.extend_from_slice(&c.our_version);
        c.out.extend_from_slice(b"\r\n");
        if let Err(e) = c.start_kex() {
            c.error = Some(e);
        }
        c
    }

    fn is_client(&self) -> bool {
        matches!(self.role, Role::Client(_))
    }

    /// Whether user authentication has succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The error that ended the connection, if it has ended.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Whether the connection has ended (by error or disconnect).
    pub fn is_closed(&self) -> bool {
        self.error.is_some()
    }

    /// Whether strict KEX (the Terrapin countermeasure) is in force.
    pub fn is_strict_kex(&self) -> bool {
        self.strict
    }

    /// The peer's identification string (without CR LF), once received.
    pub fn peer_version(&self) -> Option<&[u8]> {
        self.peer_version.as_deref()
    }

    /// Takes the bytes to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// How many bytes are waiting to be written (for back-pressure).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Takes the next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which [`Connection::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        let mut t = self.kex_started_at + self.cfg.rekey_interval;
        if !self.authenticated {
            t = t.min(self.auth_deadline);
        }
        if let Some(idle) = self.cfg.idle_timeout {
            t = t.min(self.last_rx + idle);
        }
        if let Some(k) = self.keepalive_due() {
            t = t.min(k);
        }
        Some(t)
    }

    /// When the next keepalive is due, if keepalives are on and the connection is up
    /// and not in a key exchange (none may be sent then; the exchange's own packets
    /// show the peer is alive, and a deadline in the past would make a driver spin).
    fn keepalive_due(&self) -> Option<Instant> {
        let interval = self.cfg.keepalive_interval?;
        if !self.authenticated || self.kex.is_some() {
            return None;
        }
        Some(if self.keepalives_unanswered == 0 {
            self.last_rx + interval
        } else {
            self.last_keepalive + interval
        })
    }

    /// Advances timers: the pre-auth deadline, the idle deadline and time-based rekey.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        if !self.authenticated && now >= self.auth_deadline {
            return Err(self.fail(Error::Timeout(
                "authentication did not complete in time".into(),
            )));
        }
        if let Some(idle) = self.cfg.idle_timeout
            && now >= self.last_rx + idle
        {
            return Err(self.fail(Error::Timeout("connection idle".into())));
        }
        if let Some(due) = self.keepalive_due()
            && now >= due
        {
            if self.keepalives_unanswered >= self.cfg.keepalive_max {
                let n = self.keepalives_unanswered;
                return Err(self.fail(Error::Timeout(format!(
                    "no answer to {n} keepalives in a row"
                ))));
            }
            self.keepalives_unanswered += 1;
            self.last_keepalive = now;
            self.reply_owners.push_back(true);
            let mut p = vec![msg::GLOBAL_REQUEST];
            p.put_str("keepalive@openssh.com");
            p.put_bool(true);
            self.send(p);
        }
        if self.kex.is_none()
            && self.kex_count > 0
            && now >= self.kex_started_at + self.cfg.rekey_interval
        {
            self.kex_started_at = now;
            let r = self.start_kex();
            return self.guard(r);
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records a fatal error, queues a DISCONNECT (best effort) and returns the error.
    fn fail(&mut self, e: Error) -> Error {
        if self.error.is_none() {
            if self.peer_version.is_some() && !matches!(e, Error::PeerDisconnected { .. }) {
                let mut p = vec![msg::DISCONNECT];
                p.put_u32(e.disconnect_code());
                // Generic text: never tell the peer which check failed.
                p.put_str(match e {
                    Error::Auth(_) => "authentication failed",
                    Error::HostKey(_) => "host key not verifiable",
                    Error::KeyExchange(_) => "key exchange failed",
                    Error::Timeout(_) => "timeout",
                    Error::BadTag => "packet authentication failed",
                    _ => "protocol error",
                });
                p.put_str("");
                self.sealer.seal(&p, &mut self.out);
            }
            tracing::debug!(error = %e, "ssh connection failed");
            self.error = Some(e.clone());
        }
        e
    }

    fn guard<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        r.map_err(|e| self.fail(e))
    }

    /// Ends the connection with `SSH_MSG_DISCONNECT` (`BY_APPLICATION`).
    pub fn disconnect(&mut self, description: &str) {
        if self.error.is_none() {
            let mut p = vec![msg::DISCONNECT];
            p.put_u32(disconnect::BY_APPLICATION);
            p.put_str(description);
            p.put_str("");
            self.sealer.seal(&p, &mut self.out);
            self.error = Some(Error::Closed);
        }
    }

    /// Lends the input buffer to a driver that reads the transport straight into it
    /// (appending after the bytes it holds), which saves copying every byte received.
    /// Give it back with [`Connection::put_input_buffer`] before calling
    /// [`Connection::handle_input`] (with no further bytes) to process what was read.
    pub fn take_input_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.inbuf)
    }

    /// Gives back the buffer [`Connection::take_input_buffer`] lent, with the bytes read
    /// into it appended.
    pub fn put_input_buffer(&mut self, buf: BytesMut) {
        self.inbuf = buf;
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), Error> {
        self.check_open()?;
        self.inbuf.extend_from_slice(data);
        let r = self.process(now);
        self.guard(r)
    }

    fn process(&mut self, now: Instant) -> Result<(), Error> {
        if self.peer_version.is_none() && !self.read_version()? {
            return Ok(());
        }
        while self.error.is_none() {
            let Some((payload, wire)) = self.opener.open(&mut self.inbuf)? else {
                break;
            };
            self.last_rx = now;
            self.keepalives_unanswered = 0;
            self.bytes_since_kex += wire as u64;
            let seq = self.opener.seq.wrapping_sub(1);
            self.packets_received += 1;
            self.handle_packet(payload, seq, now)?;
        }
        self.maybe_rekey(now)
    }

    fn read_version(&mut self) -> Result<bool, Error> {
        loop {
            let Some(nl) = self.inbuf.iter().position(|&b| b == b'\n') else {
                if self.inbuf.len() > MAX_BANNER_LINE {
                    return Err(Error::Protocol("identification line too long".into()));
                }
                return Ok(false);
            };
            if nl + 1 > MAX_BANNER_LINE {
                return Err(Error::Protocol("identification line too long".into()));
            }
            let line = self.inbuf.split_to(nl + 1);
            let mut line = &line[..nl];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.starts_with(b"SSH-") {
                if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                    return Err(Error::Protocol("unsupported SSH protocol version".into()));
                }
                self.peer_version = Some(line.to_vec());
                return Ok(true);
            }
            // RFC 4253 §4.2: only a server may send other lines first.
            if !self.is_client() {
                return Err(Error::Protocol(
                    "client did not start with its identification".into(),
                ));
            }
            self.banner_bytes += nl + 1;
            if self.banner_bytes > MAX_BANNER_TOTAL {
                return Err(Error::Protocol(
                    "too many lines before identification".into(),
                ));
            }
        }
    }

    // ---- sending ------------------------------------------------------------------------

    /// Whether this message may be sent while our side of a key exchange is in progress.
    fn is_kex_safe(ty: u8) -> bool {
        matches!(ty, 1..=4 | 20..=49)
    }

    fn send(&mut self, payload: Vec<u8>) {
        let ty = payload.first().copied().unwrap_or(0);
        let holding = self
            .kex
            .as_ref()
            .is_some_and(|k| k.ours.is_some() && !k.sent_newkeys);
        if (holding || !self.queued.is_empty() && self.kex.is_some()) && !Self::is_kex_safe(ty) {
            self.queued.push_back(payload);
            return;
        }
        let n = self.sealer.seal(&payload, &mut self.out);
        self.bytes_since_kex += n as u64;
    }

    /// Sends a message as it is, bypassing every state check. Only for tests that need to
    /// play a misbehaving peer.
    #[doc(hidden)]
    pub fn inject_payload(&mut self, payload: &[u8]) {
        self.sealer.seal(payload, &mut self.out);
    }

    fn maybe_rekey(&mut self, now: Instant) -> Result<(), Error> {
        if self.kex.is_none() && self.kex_count > 0 && self.bytes_since_kex >= self.cfg.rekey_bytes
        {
            self.kex_started_at = now;
            self.start_kex()?;
        }
        Ok(())
    }

    /// Starts a key exchange (re-key) now, unless one is already running.
    pub fn rekey(&mut self, now: Instant) -> Result<(), Error> {
        self.check_open()?;
        if self.kex.is_none() && self.kex_count > 0 {
            self.kex_started_at = now;
            let r = self.start_kex();
            return self.guard(r);
        }
        Ok(())
    }

    fn host_key_algs(&self) -> Vec<&'static str> {
        match &self.role {
            Role::Client(c) => {
                let mut v = Vec::new();
                if !c.trusted_host_cas.is_empty() {
                    v.extend(CERT_ALGS);
                }
                if !c.known_host_keys.is_empty() {
                    v.extend(PLAIN_ALGS);
                }
                v
            }
            Role::Server(s, _) => s.host_key.algorithms(),
        }
    }

    fn start_kex(&mut self) -> Result<(), Error> {
        let first = self.kex_count == 0;
        let markers: &[&str] = match (first, self.is_client()) {
            (true, true) => &[kex::EXT_INFO_C, kex::STRICT_C],
            (true, false) => &[kex::EXT_INFO_S, kex::STRICT_S],
            _ => &[],
        };
        let ki = KexInit::ours(
            &self.cfg.kex,
            &self.host_key_algs(),
            &self.cfg.ciphers,
            markers,
        );
        let payload = ki.encode();
        let round = self.kex.get_or_insert_with(KexRound::default);
        round.ours = Some(payload.clone());
        self.bytes_since_kex = 0;
        self.send(payload);
        if self.kex.as_ref().is_some_and(|k| k.theirs.is_some()) {
            self.after_kexinits()?;
        }
        Ok(())
    }

    // ---- receiving ----------------------------------------------------------------------

    fn handle_packet(&mut self, payload: Bytes, seq: u32, now: Instant) -> Result<(), Error> {
        let ty = *payload
            .first()
            .ok_or_else(|| Error::Protocol("empty packet".into()))?;
        if self.skip_guess && (30..=49).contains(&ty) {
            self.skip_guess = false;
            return Ok(());
        }
        let in_initial_kex = self.kex_count == 0;
        if in_initial_kex {
            let kex_msg = matches!(ty, msg::KEXINIT | msg::NEWKEYS | 30..=49 | msg::DISCONNECT);
            let lenient = matches!(ty, msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED);
            let peer_ki_seen = self.kex.as_ref().is_some_and(|k| k.theirs.is_some());
            if !kex_msg && !(lenient && !(self.strict && peer_ki_seen)) {
                return Err(Error::Protocol(format!(
                    "unexpected message {ty} during initial key exchange"
                )));
            }
        }
        match ty {
            msg::DISCONNECT => {
                let mut r = Reader::new(&payload[1..]);
                let reason = r.u32().unwrap_or(0);
                let description = r.utf8().unwrap_or("").chars().take(256).collect();
                Err(Error::PeerDisconnected {
                    reason,
                    description,
                })
            }
            msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED => Ok(()),
            msg::KEXINIT => self.on_kexinit(payload, now),
            msg::KEX_ECDH_INIT if !self.is_client() => self.on_ecdh_init(&payload),
            msg::KEX_ECDH_REPLY if self.is_client() => self.on_ecdh_reply(&payload),
            msg::NEWKEYS => self.on_newkeys(),
            msg::EXT_INFO => self.on_ext_info(&payload),
            msg::SERVICE_REQUEST | msg::USERAUTH_REQUEST if !self.is_client() => {
                self.server_auth(ty, &payload)
            }
            msg::SERVICE_ACCEPT
            | msg::USERAUTH_FAILURE
            | msg::USERAUTH_SUCCESS
            | msg::USERAUTH_BANNER
            | msg::USERAUTH_PK_OK
                if self.is_client() =>
            {
                self.client_auth_msg(ty, &payload)
            }
            80..=127 => {
                if !self.authenticated {
                    return Err(Error::Protocol(
                        "connection message before authentication".into(),
                    ));
                }
                self.handle_connection_msg(ty, payload)
            }
            30..=79 => Err(Error::Protocol(format!("unexpected message {ty}"))),
            _ => {
                let mut p = vec![msg::UNIMPLEMENTED];
                p.put_u32(seq);
                self.send(p);
                Ok(())
            }
        }
    }

    fn on_kexinit(&mut self, payload: Bytes, now: Instant) -> Result<(), Error> {
        if self.kex.as_ref().is_some_and(|k| k.theirs.is_some()) {
            return Err(Error::Protocol("duplicate KEXINIT".into()));
        }
        KexInit::decode(&payload)?;
        if self.kex_count == 0 && self.packets_received == 1 {
            self.peer_kexinit_first = true;
        }
        self.kex.get_or_insert_with(KexRound::default).theirs = Some(payload.to_vec());
        if self.kex.as_ref().is_some_and(|k| k.ours.is_none()) {
            self.kex_started_at = now;
            self.start_kex()
        } else {
            self.after_kexinits()
        }
    }

    fn after_kexinits(&mut self) -> Result<(), Error> {
        let is_client = self.is_client();
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("no kex".into()))?;
        let (Some(ours), Some(theirs)) = (&round.ours, &round.theirs) else {
            return Ok(());
        };
        let ours_ki = KexInit::decode(ours)?;
        let theirs_ki = KexInit::decode(theirs)?;
        let (c, s) = if is_client {
            (&ours_ki, &theirs_ki)
        } else {
            (&theirs_ki, &ours_ki)
        };
        let n = kex::negotiate(c, s, is_client)?;
        if self.kex_count == 0 {
            self.strict = c.kex.iter().any(|x| x == kex::STRICT_C)
                && s.kex.iter().any(|x| x == kex::STRICT_S);
            if self.strict && !self.peer_kexinit_first {
                return Err(Error::Protocol(
                    "strict KEX: KEXINIT was not the first packet".into(),
                ));
            }
            if !is_client {
                self.peer_ext_info = c.kex.iter().any(|x| x == kex::EXT_INFO_C);
            }
        }
        self.skip_guess = n.ignore_guess;
        let alg = n.kex;
        round.negotiated = Some(n);
        if is_client {
            let eph = Ephemeral::generate(alg)?;
            let mut p = vec![msg::KEX_ECDH_INIT];
            p.put_string(&eph.public);
            round.ephemeral = Some(eph);
            self.send(p);
        }
        Ok(())
    }

    fn derive_keys(&mut self, k: &[u8], h: &[u8]) -> Result<(), Error> {
        let sid = self.session_id.get_or_insert_with(|| h.to_vec()).clone();
        let is_client = self.is_client();
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("no kex".into()))?;
        let n = round
            .negotiated
            .as_ref()
            .ok_or_else(|| Error::Protocol("no kex".into()))?;
        let mk = |alg: crate::cipher::CipherAlg, iv_x: u8, key_x: u8| DirKeys {
            alg,
            iv: kex::derive(k, h, iv_x, &sid, alg.iv_len()),
            key: kex::derive(k, h, key_x, &sid, alg.key_len()),
        };
        let cs = mk(n.enc_cs, b'A', b'C');
        let sc = mk(n.enc_sc, b'B', b'D');
        round.keys = Some(if is_client { (cs, sc) } else { (sc, cs) });
        Ok(())
    }

    fn send_newkeys(&mut self) -> Result<(), Error> {
        self.send(vec![msg::NEWKEYS]);
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("no kex".into()))?;
        let (out_keys, _) = round
            .keys
            .as_ref()
            .ok_or_else(|| Error::Protocol("no keys".into()))?;
        self.sealer
            .set_key(out_keys.alg, &out_keys.key, &out_keys.iv)?;
        round.sent_newkeys = true;
        if self.strict {
            self.sealer.seq = 0;
        }
        if self.kex_count == 0 && !self.is_client() && self.peer_ext_info {
            let mut p = vec![msg::EXT_INFO];
            p.put_u32(1);
            p.put_str("server-sig-algs");
            p.put_name_list(&PLAIN_ALGS);
            self.send(p);
        }
        self.maybe_finish_kex()
    }

    fn on_ecdh_init(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Role::Server(cfg, _) = &self.role else {
            return Err(Error::Protocol("unexpected".into()));
        };
        let cfg = cfg.clone();
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("ECDH_INIT outside kex".into()))?;
        let n = round
            .negotiated
            .clone()
            .ok_or_else(|| Error::Protocol("ECDH_INIT before KEXINIT".into()))?;
        if round.keys.is_some() {
            return Err(Error::Protocol("duplicate ECDH_INIT".into()));
        }
        let mut r = Reader::new(&payload[1..]);
        let q_c = r.string()?.to_vec();
        let eph = Ephemeral::generate(n.kex)?;
        let q_s = eph.public.clone();
        let k = eph.agree(&q_c)?;
        let k_s = cfg.host_key.blob(&n.host_key)?;
        let h = HashInput {
            v_c: self.peer_version.as_deref().unwrap_or_default(),
            v_s: &self.our_version,
            i_c: round.theirs.as_deref().unwrap_or_default(),
            i_s: round.ours.as_deref().unwrap_or_default(),
            k_s: &k_s,
            q_c: &q_c,
            q_s: &q_s,
            k: &k,
        }
        .hash();
        let sig = cfg.host_key.sign(&n.host_key, &h)?;
        let mut p = vec![msg::KEX_ECDH_REPLY];
        p.put_string(&k_s);
        p.put_string(&q_s);
        p.put_string(&sig);
        self.send(p);
        self.derive_keys(&k, &h)?;
        self.send_newkeys()
    }

    fn on_ecdh_reply(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Role::Client(cfg) = &self.role else {
            return Err(Error::Protocol("unexpected".into()));
        };
        let cfg = cfg.clone();
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("ECDH_REPLY outside kex".into()))?;
        let n = round
            .negotiated
            .clone()
            .ok_or_else(|| Error::Protocol("ECDH_REPLY before KEXINIT".into()))?;
        let eph = round
            .ephemeral
            .take()
            .ok_or_else(|| Error::Protocol("unexpected ECDH_REPLY".into()))?;
        let mut r = Reader::new(&payload[1..]);
        let k_s = r.string()?;
        let q_s = r.string()?;
        let sig = r.string()?;
        let q_c = eph.public.clone();
        let (host_key, cert) =
            keys::parse_blob(&n.host_key, k_s).map_err(|e| Error::HostKey(e.to_string()))?;
        match &cert {
            Some(cert) => {
                keys::check_host_cert(cert, &cfg.trusted_host_cas, cfg.host_principal.as_deref())?
            }
            None => {
                if !cfg
                    .known_host_keys
                    .iter()
                    .any(|k| k.key_data() == &host_key)
                {
                    return Err(Error::HostKey("unknown host key".into()));
                }
            }
        }
        let k = eph.agree(q_s)?;
        let h = HashInput {
            v_c: &self.our_version,
            v_s: self.peer_version.as_deref().unwrap_or_default(),
            i_c: round.ours.as_deref().unwrap_or_default(),
            i_s: round.theirs.as_deref().unwrap_or_default(),
            k_s,
            q_c: &q_c,
            q_s,
            k: &k,
        }
        .hash();
        keys::verify(&host_key, &n.host_key, sig, &h)
            .map_err(|_| Error::KeyExchange("bad host key signature".into()))?;
        self.derive_keys(&k, &h)?;
        self.send_newkeys()
    }

    fn on_newkeys(&mut self) -> Result<(), Error> {
        let round = self
            .kex
            .as_mut()
            .ok_or_else(|| Error::Protocol("NEWKEYS outside kex".into()))?;
        let (_, in_keys) = round
            .keys
            .as_ref()
            .ok_or_else(|| Error::Protocol("NEWKEYS too early".into()))?;
        if round.recv_newkeys {
            return Err(Error::Protocol("duplicate NEWKEYS".into()));
        }
        self.opener
            .set_key(in_keys.alg, &in_keys.key, &in_keys.iv)?;
        round.recv_newkeys = true;
        if self.strict {
            self.opener.seq = 0;
        }
        self.maybe_finish_kex()
    }

    fn maybe_finish_kex(&mut self) -> Result<(), Error> {
        if !self
            .kex
            .as_ref()
            .is_some_and(|k| k.sent_newkeys && k.recv_newkeys)
        {
            return Ok(());
        }
        self.kex = None;
        self.kex_count += 1;
        self.bytes_since_kex = 0;
        self.events.push_back(Event::KeysExchanged {
            count: self.kex_count,
            strict: self.strict,
        });
        while let Some(p) = self.queued.pop_front() {
            self.send(p);
        }
        if self.kex_count == 1 && self.is_client() {
            let mut p = vec![msg::SERVICE_REQUEST];
            p.put_str("ssh-userauth");
            self.send(p);
            self.client_auth = ClientAuth::ServiceRequested;
        }
        Ok(())
    }

    fn on_ext_info(&mut self, payload: &[u8]) -> Result<(), Error> {
        if !self.is_client() {
            return Ok(());
        }
        let mut r = Reader::new(&payload[1..]);
        let n = r.u32()?;
        for _ in 0..n.min(64) {
            let name = r.utf8()?;
            let value = r.utf8()?;
            if name == "server-sig-algs" {
                self.server_sig_algs = Some(value.split(',').map(str::to_owned).collect());
            }
        }
        Ok(())
    }

    // ---- user authentication ------------------------------------------------------------

    fn client_auth_msg(&mut self, ty: u8, _payload: &[u8]) -> Result<(), Error> {
        let Role::Client(cfg) = &self.role else {
            return Ok(());
        };
        let cfg = cfg.clone();
        match ty {
            msg::SERVICE_ACCEPT if self.client_auth == ClientAuth::ServiceRequested => {
                let alg = self.client_pk_alg(&cfg)?;
                let blob = cfg.key.blob(alg)?;
                let sid = self.session_id.clone().unwrap_or_default();
                let mut signed = Vec::new();
                signed.put_string(&sid);
                let mut req = vec![msg::USERAUTH_REQUEST];
                req.put_str(&cfg.user);
                req.put_str("ssh-connection");
                req.put_str("publickey");
                req.put_bool(true);
                req.put_str(alg);
                req.put_string(&blob);
                signed.put_raw(&req);
                let sig = cfg.key.sign(alg, &signed)?;
                req.put_string(&sig);
                self.send(req);
                self.client_auth = ClientAuth::Requested;
                Ok(())
            }
            msg::USERAUTH_BANNER => Ok(()),
            msg::USERAUTH_SUCCESS
                if self.client_auth == ClientAuth::Requested && !self.authenticated =>
            {
                self.authenticated = true;
                self.events.push_back(Event::Authenticated(AuthInfo {
                    user: cfg.user.clone(),
                    certificate: None,
                }));
                Ok(())
            }
            msg::USERAUTH_FAILURE if self.client_auth == ClientAuth::Requested => {
                Err(Error::Auth("server refused the key".into()))
            }
            _ => Err(Error::Protocol(format!(
                "unexpected authentication message {ty}"
            ))),
        }
    }

    fn client_pk_alg(&self, cfg: &ClientConfig) -> Result<&'static str, Error> {
        let algs = cfg.key.algorithms();
        let sig_algs = self.server_sig_algs.as_ref();
        // RSA: prefer what `server-sig-algs` lists; without a match, try our first choice.
        algs.iter()
            .copied()
            .find(|a| {
                let s = keys::sig_alg(a);
                !s.starts_with("rsa-") || sig_algs.is_none_or(|l| l.iter().any(|x| x == s))
            })
            .or_else(|| algs.first().copied())
            .ok_or_else(|| Error::Auth("no usable public-key algorithm".into()))
    }

    fn server_auth(&mut self, ty: u8, payload: &[u8]) -> Result<(), Error> {
        let Role::Server(cfg, peer) = &self.role else {
            return Ok(());
        };
        let (cfg, peer) = (cfg.clone(), *peer);
        let mut r = Reader::new(&payload[1..]);
        if ty == msg::SERVICE_REQUEST {
            let svc = r.utf8()?;
            if svc != "ssh-userauth" {
                return Err(Error::Protocol("unsupported service".into()));
            }
            let mut p = vec![msg::SERVICE_ACCEPT];
            p.put_str(svc);
            self.send(p);
            return Ok(());
        }
        if self.authenticated {
            return Ok(()); // RFC 4252 §5.1: ignore requests after success.
        }
        let user = r.utf8()?.to_owned();
        let service = r.utf8()?;
        let method = r.utf8()?;
        let failure = |this: &mut Self, counts: bool| -> Result<(), Error> {
            if counts {
                this.auth_failures += 1;
                if this.auth_failures >= cfg.max_auth_attempts {
                    return Err(Error::Auth("too many authentication failures".into()));
                }
            }
            let mut p = vec![msg::USERAUTH_FAILURE];
            p.put_name_list(&["publickey"]);
            p.put_bool(false);
            this.send(p);
            Ok(())
        };
        if service != "ssh-connection" || method != "publickey" {
            return failure(self, method != "none");
        }
        let signed = r.bool()?;
        let alg = r.utf8()?.to_owned();
        let blob = r.string()?;
        let supported = CERT_ALGS.contains(&alg.as_str());
        let parsed = if supported {
            keys::parse_blob(&alg, blob).ok()
        } else {
            None
        };
        let Some((key, Some(cert))) = parsed else {
            return failure(self, true);
        };
        if !signed {
            if keys::check_user_cert(&cert, &cfg.trusted_user_cas, &user, peer).is_err() {
                return failure(self, true);
            }
            let mut p = vec![msg::USERAUTH_PK_OK];
            p.put_str(&alg);
            p.put_string(blob);
            self.send(p);
            return Ok(());
        }
        let sig_start = payload.len() - r.clone().rest().len();
        let sig = r.string()?;
        if !r.is_empty() {
            return Err(Error::Protocol("trailing bytes in userauth request".into()));
        }
        let mut data = Vec::new();
        data.put_string(self.session_id.as_deref().unwrap_or_default());
        data.put_raw(&payload[..sig_start]);
        // Signature first, then the certificate checks; the peer learns neither outcome.
        let ok = keys::verify(&key, &alg, sig, &data).is_ok()
            && keys::check_user_cert(&cert, &cfg.trusted_user_cas, &user, peer).is_ok();
        if !ok {
            return failure(self, true);
        }
        self.authenticated = true;
        self.send(vec![msg::USERAUTH_SUCCESS]);
        self.events.push_back(Event::Authenticated(AuthInfo {
            user,
            certificate: Some(Box::new(cert)),
        }));
        Ok(())
    }

    // ---- connection protocol ------------------------------------------------------------

    fn chan(&mut self, id: u32) -> Result<&mut Chan, Error> {
        self.channels
            .get_mut(&id)
            .ok_or_else(|| Error::Protocol(format!("message for unknown channel {id}")))
    }

    fn handle_connection_msg(&mut self, ty: u8, payload: Bytes) -> Result<(), Error> {
        let mut r = Reader::new(&payload[1..]);
        match ty {
            msg::GLOBAL_REQUEST => {
                let _name = r.utf8()?;
                if r.bool()? {
                    self.send(vec![msg::REQUEST_FAILURE]);
                }
                Ok(())
            }
            msg::REQUEST_SUCCESS | msg::REQUEST_FAILURE => {
                match self.reply_owners.pop_front() {
                    None => {
                        return Err(Error::Protocol("unexpected global request reply".into()));
                    }
                    // A keepalive answered (success or failure alike: the peer is alive).
                    Some(true) => return Ok(()),
                    Some(false) => {}
                }
                self.events.push_back(Event::GlobalReply {
                    success: ty == msg::REQUEST_SUCCESS,
                    payload: payload.slice(1..),
                });
                Ok(())
            }
            msg::CHANNEL_OPEN => {
                let kind = r.utf8()?.to_owned();
                let remote_id = r.u32()?;
                let window = r.u32()?;
                let max_packet = r.u32()?;
                let extra = payload.slice(payload.len() - r.rest().len()..);
                if self.channels.len() >= self.cfg.max_channels {
                    let mut p = vec![msg::CHANNEL_OPEN_FAILURE];
                    p.put_u32(remote_id);
                    p.put_u32(OPEN_RESOURCE_SHORTAGE);
                    p.put_str("too many channels");
                    p.put_str("");
                    self.send(p);
                    return Ok(());
                }
                let id = self.alloc_id();
                self.channels.insert(
                    id,
                    Chan {
                        remote_id,
                        state: ChanState::PendingAccept,
                        local_window: self.cfg.window_size,
                        consumed: 0,
                        remote_window: window,
                        remote_max_packet: max_packet,
                        sent_eof: false,
                        recv_eof: false,
                        sent_close: false,
                        replies_owed: 0,
                        replies_awaited: 0,
                    },
                );
                self.events.push_back(Event::ChannelOpenRequest {
                    id: ChannelId(id),
                    kind,
                    extra,
                });
                Ok(())
            }
            msg::CHANNEL_OPEN_CONFIRMATION => {
                let id = r.u32()?;
                let remote_id = r.u32()?;
                let window = r.u32()?;
                let max_packet = r.u32()?;
                let c = self.chan(id)?;
                if c.state != ChanState::Opening {
                    return Err(Error::Protocol("unexpected channel confirmation".into()));
                }
                c.state = ChanState::Open;
                c.remote_id = remote_id;
                c.remote_window = window;
                c.remote_max_packet = max_packet;
                self.events
                    .push_back(Event::ChannelOpenConfirmed { id: ChannelId(id) });
                Ok(())
            }
            msg::CHANNEL_OPEN_FAILURE => {
                let id = r.u32()?;
                let reason = r.u32()?;
                let description = String::from_utf8_lossy(r.string().unwrap_or_default())
                    .chars()
                    .take(1024)
                    .collect();
                if self.chan(id)?.state != ChanState::Opening {
                    return Err(Error::Protocol("unexpected channel open failure".into()));
                }
                self.channels.remove(&id);
                self.events.push_back(Event::ChannelOpenFailed {
                    id: ChannelId(id),
                    reason,
                    description,
                });
                Ok(())
            }
            _ => self.handle_channel_msg(ty, &payload, &mut r),
        }
    }

    fn handle_channel_msg(
        &mut self,
        ty: u8,
        payload: &Bytes,
        r: &mut Reader<'_>,
    ) -> Result<(), Error> {
        let id = r.u32()?;
        let max_packet = self.cfg.max_packet;
        let c = self
            .channels
            .get_mut(&id)
            .ok_or_else(|| Error::Protocol(format!("message for unknown channel {id}")))?;
        if c.state != ChanState::Open {
            return Err(Error::Protocol(
                "message for a channel that is not open".into(),
            ));
        }
        let cid = ChannelId(id);
        match ty {
            msg::CHANNEL_WINDOW_ADJUST => {
                let n = r.u32()?;
                c.remote_window = c
                    .remote_window
                    .checked_add(n)
                    .ok_or_else(|| Error::Protocol("channel window overflow".into()))?;
                self.events.push_back(Event::ChannelWindow { id: cid });
            }
            msg::CHANNEL_DATA | msg::CHANNEL_EXTENDED_DATA => {
                let code = if ty == msg::CHANNEL_EXTENDED_DATA {
                    Some(r.u32()?)
                } else {
                    None
                };
                let data = r.string()?;
                let len = data.len();
                let start = payload.len() - r.rest().len() - len;
                if len > max_packet as usize {
                    return Err(Error::Protocol(
                        "channel data exceeds maximum packet size".into(),
                    ));
                }
                if len > c.local_window as usize {
                    return Err(Error::Protocol("channel window exceeded".into()));
                }
                c.local_window -= len as u32;
                if c.recv_eof {
                    return Ok(());
                }
                let data = payload.slice(start..start + len);
                self.events.push_back(match code {
                    None => Event::ChannelData { id: cid, data },
                    Some(code) => Event::ChannelExtendedData {
                        id: cid,
                        code,
                        data,
                    },
                });
            }
            msg::CHANNEL_EOF => {
                if !c.recv_eof {
                    c.recv_eof = true;
                    self.events.push_back(Event::ChannelEof { id: cid });
                }
            }
            msg::CHANNEL_CLOSE => {
                let (sent_close, remote_id) = (c.sent_close, c.remote_id);
                if !sent_close {
                    let mut p = vec![msg::CHANNEL_CLOSE];
                    p.put_u32(remote_id);
                    self.send(p);
                }
                self.channels.remove(&id);
                self.events.push_back(Event::ChannelClosed { id: cid });
            }
            msg::CHANNEL_REQUEST => {
                let name = r.utf8()?.to_owned();
                let want_reply = r.bool()?;
                let rest = r.rest().len();
                if want_reply {
                    c.replies_owed += 1;
                }
                self.events.push_back(Event::ChannelRequest {
                    id: cid,
                    name,
                    want_reply,
                    payload: payload.slice(payload.len() - rest..),
                });
            }
            msg::CHANNEL_SUCCESS | msg::CHANNEL_FAILURE => {
                if c.replies_awaited == 0 {
                    return Err(Error::Protocol("unexpected channel request reply".into()));
                }
                c.replies_awaited -= 1;
                self.events.push_back(Event::ChannelReply {
                    id: cid,
                    success: ty == msg::CHANNEL_SUCCESS,
                });
            }
            _ => {
                return Err(Error::Protocol(format!("unknown connection message {ty}")));
            }
        }
        Ok(())
    }

    fn alloc_id(&mut self) -> u32 {
        while self.channels.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn ready(&self) -> Result<(), Error> {
        self.check_open()?;
        if !self.authenticated {
            return Err(Error::Channel("not authenticated".into()));
        }
        Ok(())
    }

    fn open_chan(&mut self, id: ChannelId) -> Result<&mut Chan, Error> {
        let c = self
            .channels
            .get_mut(&id.0)
            .ok_or_else(|| Error::Channel("unknown channel".into()))?;
        if c.state != ChanState::Open {
            return Err(Error::Channel("channel is not open".into()));
        }
        Ok(c)
    }

    // ---- application API ----------------------------------------------------------------

    /// Opens a channel of any type; `extra` is appended after the standard fields.
    /// Completion is reported by [`Event::ChannelOpenConfirmed`] or [`Event::ChannelOpenFailed`].
    pub fn open_channel(&mut self, kind: &str, extra: &[u8]) -> Result<ChannelId, Error> {
        self.ready()?;
        if self.channels.len() >= self.cfg.max_channels {
            return Err(Error::Channel("too many channels".into()));
        }
        let id = self.alloc_id();
        self.channels.insert(
            id,
            Chan {
                remote_id: 0,
                state: ChanState::Opening,
                local_window: self.cfg.window_size,
                consumed: 0,
                remote_window: 0,
                remote_max_packet: 0,
                sent_eof: false,
                recv_eof: false,
                sent_close: false,
                replies_owed: 0,
                replies_awaited: 0,
            },
        );
        let mut p = vec![msg::CHANNEL_OPEN];
        p.put_str(kind);
        p.put_u32(id);
        p.put_u32(self.cfg.window_size);
        p.put_u32(self.cfg.max_packet);
        p.put_raw(extra);
        self.send(p);
        Ok(ChannelId(id))
    }

    /// Accepts a channel announced by [`Event::ChannelOpenRequest`].
    pub fn accept_channel(&mut self, id: ChannelId) -> Result<(), Error> {
        self.check_open()?;
        let (window, max_packet) = (self.cfg.window_size, self.cfg.max_packet);
        let c = self
            .channels
            .get_mut(&id.0)
            .ok_or_else(|| Error::Channel("unknown channel".into()))?;
        if c.state != ChanState::PendingAccept {
            return Err(Error::Channel("channel is not awaiting an answer".into()));
        }
        c.state = ChanState::Open;
        let mut p = vec![msg::CHANNEL_OPEN_CONFIRMATION];
        p.put_u32(c.remote_id);
        p.put_u32(id.0);
        p.put_u32(window);
        p.put_u32(max_packet);
        self.send(p);
        Ok(())
    }

    /// Refuses a channel announced by [`Event::ChannelOpenRequest`].
    pub fn reject_channel(
        &mut self,
        id: ChannelId,
        reason: u32,
        description: &str,
    ) -> Result<(), Error> {
        self.check_open()?;
        let c = self
            .channels
            .get(&id.0)
            .ok_or_else(|| Error::Channel("unknown channel".into()))?;
        if c.state != ChanState::PendingAccept {
            return Err(Error::Channel("channel is not awaiting an answer".into()));
        }
        let mut p = vec![msg::CHANNEL_OPEN_FAILURE];
        p.put_u32(c.remote_id);
        p.put_u32(reason);
        p.put_str(description);
        p.put_str("");
        self.channels.remove(&id.0);
        self.send(p);
        Ok(())
    }

    /// How many bytes the peer's window lets us send on this channel now.
    pub fn send_window(&self, id: ChannelId) -> usize {
        self.channels
            .get(&id.0)
            .filter(|c| c.state == ChanState::Open && !c.sent_eof && !c.sent_close)
            .map_or(0, |c| c.remote_window as usize)
    }

    /// Sends data (`code = None`) or extended data; returns how many bytes the window
    /// allowed (possibly 0: wait for [`Event::ChannelWindow`]).
    pub fn send_data(
        &mut self,
        id: ChannelId,
        code: Option<u32>,
        data: &[u8],
    ) -> Result<usize, Error> {
        self.check_open()?;
        let c = self.open_chan(id)?;
        if c.sent_eof || c.sent_close {
            return Err(Error::Channel("channel output is closed".into()));
        }
        let n = data.len().min(c.remote_window as usize);
        let chunk = c.remote_max_packet.clamp(1, MAX_SEND_CHUNK) as usize;
        c.remote_window -= n as u32;
        let remote_id = c.remote_id;
        for part in data[..n].chunks(chunk) {
            let mut p = Vec::with_capacity(part.len() + 13);
            match code {
                None => {
                    p.put_u8(msg::CHANNEL_DATA);
                    p.put_u32(remote_id);
                }
                Some(code) => {
                    p.put_u8(msg::CHANNEL_EXTENDED_DATA);
                    p.put_u32(remote_id);
                    p.put_u32(code);
                }
            }
            p.put_string(part);
            self.send(p);
        }
        let now = self.kex_started_at;
        let r = self.maybe_rekey(now);
        self.guard(r)?;
        Ok(n)
    }

    /// Reports that `n` received bytes were processed, reopening the peer's window.
    pub fn consume(&mut self, id: ChannelId, n: usize) -> Result<(), Error> {
        self.check_open()?;
        let window = self.cfg.window_size;
        let Some(c) = self.channels.get_mut(&id.0) else {
            return Ok(());
        };
        c.consumed = c
            .consumed
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if c.state == ChanState::Open && !c.sent_close && !c.recv_eof && c.consumed >= window / 2 {
            let add = c.consumed.min(window.saturating_sub(c.local_window));
            c.consumed = 0;
            if add > 0 {
                c.local_window += add;
                let mut p = vec![msg::CHANNEL_WINDOW_ADJUST];
                p.put_u32(c.remote_id);
                p.put_u32(add);
                self.send(p);
            }
        }
        Ok(())
    }

    /// Sends EOF (no more data from us).
    pub fn send_eof(&mut self, id: ChannelId) -> Result<(), Error> {
        self.check_open()?;
        let c = self.open_chan(id)?;
        if c.sent_eof || c.sent_close {
            return Ok(());
        }
        c.sent_eof = true;
        let mut p = vec![msg::CHANNEL_EOF];
        p.put_u32(c.remote_id);
        self.send(p);
        Ok(())
    }

    /// Closes the channel; [`Event::ChannelClosed`] follows when the peer confirms.
    pub fn close_channel(&mut self, id: ChannelId) -> Result<(), Error> {
        self.check_open()?;
        let Some(c) = self.channels.get_mut(&id.0) else {
            return Ok(());
        };
        if c.state == ChanState::PendingAccept {
            return self.reject_channel(id, 2, "closed");
        }
        if c.state != ChanState::Open || c.sent_close {
            return Ok(());
        }
        c.sent_close = true;
        let mut p = vec![msg::CHANNEL_CLOSE];
        p.put_u32(c.remote_id);
        self.send(p);
        Ok(())
    }

    /// Sends a channel request of any name with raw `payload` bytes after the standard
    /// fields; with `want_reply` an [`Event::ChannelReply`] follows.
    pub fn send_channel_request(
        &mut self,
        id: ChannelId,
        name: &str,
        want_reply: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.check_open()?;
        let c = self.open_chan(id)?;
        if c.sent_close {
            return Err(Error::Channel("channel is closing".into()));
        }
        if want_reply {
            c.replies_awaited += 1;
        }
        let mut p = vec![msg::CHANNEL_REQUEST];
        p.put_u32(c.remote_id);
        p.put_str(name);
        p.put_bool(want_reply);
        p.put_raw(payload);
        self.send(p);
        Ok(())
    }

    /// Answers the oldest unanswered want-reply request on this channel.
    pub fn reply_channel_request(&mut self, id: ChannelId, success: bool) -> Result<(), Error> {
        self.check_open()?;
        let c = self.open_chan(id)?;
        if c.replies_owed == 0 {
            return Err(Error::Channel("no request awaits an answer".into()));
        }
        c.replies_owed -= 1;
        if c.sent_close {
            return Ok(());
        }
        let mut p = vec![if success {
            msg::CHANNEL_SUCCESS
        } else {
            msg::CHANNEL_FAILURE
        }];
        p.put_u32(c.remote_id);
        self.send(p);
        Ok(())
    }

    /// Sends a global request; with `want_reply` an [`Event::GlobalReply`] follows.
    pub fn send_global_request(
        &mut self,
        name: &str,
        want_reply: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.ready()?;
        if want_reply {
            self.reply_owners.push_back(false);
        }
        let mut p = vec![msg::GLOBAL_REQUEST];
        p.put_str(name);
        p.put_bool(want_reply);
        p.put_raw(payload);
        self.send(p);
        Ok(())
    }

    /// Number of channels currently allocated.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Upper bound of an SSH packet we accept, for callers sizing buffers.
    pub const MAX_PACKET_LEN: usize = MAX_PACKET_LEN;
}

//! The tokio driver: one reader task and one writer task per connection around the
//! sans-IO [`Connection`], and channel handles that are `AsyncRead + AsyncWrite`.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, oneshot};

use crate::config::{ClientConfig, ServerConfig};
use crate::conn::{AuthInfo, ChannelId, Connection, Event};
use crate::error::Error;
use crate::wire::Writer as _;

/// Output bytes queued beyond which channel writers wait for the socket.
const OUTPUT_HIGH_WATER: usize = 1024 * 1024;
/// Output bytes queued beyond which the reader stops reading the peer.
const READ_PAUSE_OUTPUT: usize = 4 * 1024 * 1024;
/// Channels announced by the peer and not yet answered.
const MAX_PENDING_INCOMING: usize = 16;
/// Unanswered channel requests queued per channel.
const MAX_PENDING_REQUESTS: usize = 16;
/// Stderr bytes kept per channel (the rest is dropped).
const MAX_STDERR: usize = 64 * 1024;

/// A channel request received from the peer.
#[derive(Debug, Clone)]
pub struct ChannelRequest {
    /// The request name (any).
    pub name: String,
    /// Whether the peer waits for [`Channel::reply`].
    pub want_reply: bool,
    /// The raw request-specific bytes.
    pub payload: Bytes,
}

#[derive(Default)]
struct Slot {
    data: VecDeque<Bytes>,
    stderr: Vec<u8>,
    eof: bool,
    closed: bool,
    handle_dropped: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    request_waker: Option<Waker>,
    open_tx: Option<oneshot::Sender<Result<(), Error>>>,
    requests: VecDeque<ChannelRequest>,
    replies: VecDeque<oneshot::Sender<bool>>,
}

impl Slot {
    fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.request_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

struct Pending {
    id: ChannelId,
    kind: String,
    extra: Bytes,
}

struct Shared {
    conn: Connection,
    slots: HashMap<ChannelId, Slot>,
    incoming: VecDeque<Pending>,
    incoming_waker: Option<Waker>,
    globals: VecDeque<oneshot::Sender<(bool, Bytes)>>,
    auth_tx: Option<oneshot::Sender<AuthInfo>>,
    drain_wakers: Vec<Waker>,
    closed_waiters: Vec<Waker>,
    kex_count: u32,
}

impl Shared {
    fn dispatch(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::KeysExchanged { count, .. } => self.kex_count = count,
                Event::Authenticated(info) => {
                    if let Some(tx) = self.auth_tx.take() {
                        let _ = tx.send(info);
                    }
                }
                Event::ChannelOpenRequest { id, kind, extra } => {
                    if self.incoming.len() >= MAX_PENDING_INCOMING {
                        let _ = self.conn.reject_channel(id, 4, "too many pending channels");
                        continue;
                    }
                    self.slots.insert(id, Slot::default());
                    self.incoming.push_back(Pending { id, kind, extra });
                    if let Some(w) = self.incoming_waker.take() {
                        w.wake();
                    }
                }
                Event::ChannelOpenConfirmed { id } => {
                    if let Some(slot) = self.slots.get_mut(&id)
                        && let Some(tx) = slot.open_tx.take()
                        && tx.send(Ok(())).is_err()
                    {
                        // The caller stopped waiting: nobody will own this channel.
                        slot.handle_dropped = true;
                        let _ = self.conn.close_channel(id);
                    }
                }
                Event::ChannelOpenFailed {
                    id,
                    reason,
                    description,
                } => {
                    if let Some(mut s) = self.slots.remove(&id)
                        && let Some(tx) = s.open_tx.take()
                    {
                        let _ = tx.send(Err(Error::OpenFailed {
                            reason,
                            description,
                        }));
                    }
                }
                Event::ChannelData { id, data } => {
                    if let Some(s) = self.slots.get_mut(&id) {
                        if s.handle_dropped {
                            let _ = self.conn.consume(id, data.len());
                            continue;
                        }
                        s.data.push_back(data);
                        if let Some(w) = s.read_waker.take() {
                            w.wake();
                        }
                    }
                }
                Event::ChannelExtendedData { id, code, data } => {
                    let n = data.len();
                    if let Some(s) = self.slots.get_mut(&id) {
                        if code == 1 && s.stderr.len() + n <= MAX_STDERR {
                            s.stderr.extend_from_slice(&data);
                        }
                        if let Some(w) = s.read_waker.take() {
                            w.wake();
                        }
                    }
                    let _ = self.conn.consume(id, n);
                }
                Event::ChannelWindow { id } => {
                    if let Some(w) = self.slots.get_mut(&id).and_then(|s| s.write_waker.take()) {
                        w.wake();
                    }
                }
                Event::ChannelEof { id } => {
                    if let Some(s) = self.slots.get_mut(&id) {
                        s.eof = true;
                        s.wake_all();
                    }
                }
                Event::ChannelClosed { id } => {
                    if let Some(s) = self.slots.get_mut(&id) {
                        s.eof = true;
                        s.closed = true;
                        s.open_tx.take();
                        s.replies.clear();
                        s.wake_all();
                        if s.handle_dropped {
                            self.slots.remove(&id);
                        }
                    }
                }
                Event::ChannelRequest {
                    id,
                    name,
                    want_reply,
                    payload,
                } => match self.slots.get_mut(&id) {
                    Some(s) if s.requests.len() < MAX_PENDING_REQUESTS && !s.handle_dropped => {
                        s.requests.push_back(ChannelRequest {
                            name,
                            want_reply,
                            payload,
                        });
                        if let Some(w) = s.request_waker.take() {
                            w.wake();
                        }
                    }
                    _ => {
                        if want_reply {
                            let _ = self.conn.reply_channel_request(id, false);
                        }
                    }
                },
                Event::ChannelReply { id, success } => {
                    if let Some(tx) = self.slots.get_mut(&id).and_then(|s| s.replies.pop_front()) {
                        let _ = tx.send(success);
                    }
                }
                Event::GlobalReply { success, payload } => {
                    if let Some(tx) = self.globals.pop_front() {
                        let _ = tx.send((success, payload));
                    }
                }
            }
        }
        if self.conn.is_closed() {
            self.auth_tx.take();
            self.globals.clear();
            for s in self.slots.values_mut() {
                s.open_tx.take();
                s.replies.clear();
                s.wake_all();
            }
            if let Some(w) = self.incoming_waker.take() {
                w.wake();
            }
            for w in self
                .closed_waiters
                .drain(..)
                .chain(self.drain_wakers.drain(..))
            {
                w.wake();
            }
        }
    }
}

struct Inner {
    shared: Mutex<Shared>,
    /// Tasks that found `shared` locked and returned `Pending` until it is released (so
    /// a worker thread is not parked while another decrypts or encrypts under the lock).
    lock_waiters: Mutex<Vec<Waker>>,
    /// Whether `lock_waiters` may be non-empty (checked on every release).
    has_lock_waiters: AtomicBool,
    write_notify: Notify,
    /// Signalled by the writer after each write (the reader waits on it when output piles up).
    drained: Notify,
}

/// The locked state; on release it wakes the tasks that found the lock taken.
struct Guard<'a> {
    guard: Option<MutexGuard<'a, Shared>>,
    inner: &'a Inner,
}

impl std::ops::Deref for Guard<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        match &self.guard {
            Some(g) => g,
            None => unreachable!("the guard is only emptied on drop"),
        }
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Shared {
        match &mut self.guard {
            Some(g) => g,
            None => unreachable!("the guard is only emptied on drop"),
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // Unlock first, then look for waiters: a waiter registers before its second
        // try, so either that try succeeds or this release sees it (both SeqCst).
        drop(self.guard.take());
        if self.inner.has_lock_waiters.swap(false, Ordering::SeqCst) {
            let waiters = std::mem::take(
                &mut *self
                    .inner
                    .lock_waiters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for w in waiters {
                w.wake();
            }
        }
    }
}

impl Inner {
    fn new(conn: Connection, auth_tx: Option<oneshot::Sender<AuthInfo>>) -> Self {
        Self {
            lock_waiters: Mutex::new(Vec::new()),
            has_lock_waiters: AtomicBool::new(false),
            shared: Mutex::new(Shared {
                conn,
                slots: HashMap::new(),
                incoming: VecDeque::new(),
                incoming_waker: None,
                globals: VecDeque::new(),
                auth_tx,
                drain_wakers: Vec::new(),
                closed_waiters: Vec::new(),
                kex_count: 0,
            }),
            write_notify: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Locks the state, blocking the thread while another holds it (the short sections:
    /// application calls, setup and teardown).
    fn lock(&self) -> Guard<'_> {
        // A poisoned lock means a panic elsewhere; keep going with the data as it is.
        let guard = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Guard {
            guard: Some(guard),
            inner: self,
        }
    }

    /// Locks the state, or registers `cx` to be woken when the holder releases it and
    /// returns `Pending`: the paths that meet the reader's decryption and a writer's
    /// encryption under bulk transfer yield the thread instead of parking it.
    fn poll_lock(&self, cx: &mut Context<'_>) -> Poll<Guard<'_>> {
        let attempt = || match self.shared.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(g) = attempt() {
            return Poll::Ready(Guard {
                guard: Some(g),
                inner: self,
            });
        }
        {
            let mut w = self
                .lock_waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
        self.has_lock_waiters.store(true, Ordering::SeqCst);
        match attempt() {
            Some(g) => Poll::Ready(Guard {
                guard: Some(g),
                inner: self,
            }),
            None => Poll::Pending,
        }
    }

    /// [`Inner::poll_lock`] as a future, for the connection's own tasks.
    async fn lock_async(&self) -> Guard<'_> {
        poll_fn(|cx| self.poll_lock(cx)).await
    }
}

/// The application's share of a connection: when the last [`Session`], [`Channel`] and
/// [`IncomingChannel`] are gone, the connection is ended (the tasks only hold [`Inner`]).
struct Owner(Arc<Inner>);

impl std::ops::Deref for Owner {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        if !s.conn.is_closed() {
            s.conn.disconnect("closed by application");
            s.dispatch();
        }
        drop(s);
        self.0.write_notify.notify_one();
    }
}

fn conn_error(s: &Shared) -> Error {
    s.conn.error().cloned().unwrap_or(Error::Closed)
}

/// The read buffer's size while little arrives: an idle connection holds only this.
const READ_BUF_MIN: usize = 4 * 1024;
/// The read buffer's size under bulk transfer (it doubles to this while reads fill it).
const READ_BUF_MAX: usize = 64 * 1024;

async fn reader<R: AsyncRead + Unpin>(inner: Arc<Inner>, mut rd: R) {
    // How much room the next read gets: doubles while reads fill it, up to
    // READ_BUF_MAX, and falls back once traffic is light.
    let mut room = READ_BUF_MIN;
    loop {
        // The connection's own input buffer is lent to this read, so received bytes
        // land where they are decrypted (no copy).
        let (deadline, backlog, mut input) = {
            let mut s = inner.lock_async().await;
            if s.conn.is_closed() {
                break;
            }
            (
                s.conn.poll_timeout(),
                s.conn.pending_output() > READ_PAUSE_OUTPUT,
                s.conn.take_input_buffer(),
            )
        };
        if backlog {
            // The peer is not reading what we owe it (replies, window adjusts): stop
            // reading its input until the socket drains, so our output stays bounded.
            inner.lock_async().await.conn.put_input_buffer(input);
            inner.write_notify.notify_one();
            inner.drained.notified().await;
            continue;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        input.reserve(room);
        let offered = input.capacity() - input.len();
        tokio::select! {
            r = rd.read_buf(&mut input) => {
                let mut s = inner.lock_async().await;
                s.conn.put_input_buffer(input);
                match r {
                    Ok(0) => {
                        let _ = s.conn.handle_timeout(Instant::now());
                        if !s.conn.is_closed() {
                            s.conn.disconnect("eof");
                        }
                    }
                    Ok(n) => {
                        let _ = s.conn.handle_input(&[], Instant::now());
                        if n >= offered.min(room) && room < READ_BUF_MAX {
                            room *= 2;
                        } else if n < READ_BUF_MIN {
                            room = READ_BUF_MIN;
                        }
                    }
                    Err(_) => s.conn.disconnect("read error"),
                }
                s.dispatch();
            }
            () = sleep => {
                let mut s = inner.lock_async().await;
                s.conn.put_input_buffer(input);
                let _ = s.conn.handle_timeout(Instant::now());
                s.dispatch();
            }
        }
        inner.write_notify.notify_one();
    }
    inner.write_notify.notify_one();
}

async fn writer<W: AsyncWrite + Unpin>(inner: Arc<Inner>, mut wr: W) {
    loop {
        let (out, closed) = {
            let mut s = inner.lock_async().await;
            (s.conn.poll_transmit(), s.conn.is_closed())
        };
        match out {
            Some(out) => {
                let ok = wr.write_all(&out).await.is_ok() && wr.flush().await.is_ok();
                inner.drained.notify_one();
                let mut s = inner.lock_async().await;
                for w in s.drain_wakers.drain(..) {
                    w.wake();
                }
                if !ok {
                    s.conn.disconnect("write error");
                    s.dispatch();
                    break;
                }
            }
            None if closed => break,
            None => inner.write_notify.notified().await,
        }
    }
    inner.drained.notify_one();
    let _ = wr.shutdown().await;
}

/// A running SSH connection (either role), driven by background tokio tasks. Cloning
/// gives another handle to the same connection.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Owner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// Client entry point.
#[derive(Debug)]
pub struct Client;

/// Server entry point.
#[derive(Debug)]
pub struct Server;

impl Client {
    /// Runs the SSH handshake and user authentication as a client over `stream`.
    pub async fn connect<S>(stream: S, config: Arc<ClientConfig>) -> Result<Session, Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let conn = Connection::client(config, Instant::now());
        Session::start(conn, stream).await.map(|(s, _)| s)
    }
}

impl Server {
    /// Runs the SSH handshake as a server over `stream` and waits until the client has
    /// authenticated. `peer` is the client's IP address (for `source-address`).
    pub async fn accept<S>(
        stream: S,
        config: Arc<ServerConfig>,
        peer: Option<IpAddr>,
    ) -> Result<(Session, AuthInfo), Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let conn = Connection::server(config, peer, Instant::now());
        Session::start(conn, stream).await
    }
}

impl Session {
    async fn start<S>(conn: Connection, stream: S) -> Result<(Self, AuthInfo), Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if let Some(e) = conn.error() {
            return Err(e.clone());
        }
        let (auth_tx, auth_rx) = oneshot::channel();
        let inner = Arc::new(Inner::new(conn, Some(auth_tx)));
        let (rd, wr) = tokio::io::split(stream);
        tokio::spawn(reader(inner.clone(), rd));
        tokio::spawn(writer(inner.clone(), wr));
        inner.write_notify.notify_one();
        let session = Self {
            inner: Arc::new(Owner(inner)),
        };
        match auth_rx.await {
            Ok(info) => Ok((session, info)),
            Err(_) => Err(conn_error(&session.inner.lock())),
        }
    }

    fn kick(&self) {
        self.inner.write_notify.notify_one();
    }

    /// Opens a channel of any type (`extra`: type-specific bytes after the standard fields).
    pub async fn open_channel(&self, kind: &str, extra: &[u8]) -> Result<Channel, Error> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut s = self.inner.lock();
            let id = s.conn.open_channel(kind, extra)?;
            s.slots.insert(
                id,
                Slot {
                    open_tx: Some(tx),
                    ..Slot::default()
                },
            );
            id
        };
        self.kick();
        let channel = Channel {
            inner: self.inner.clone(),
            id,
        };
        match rx.await {
            Ok(Ok(())) => Ok(channel),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(conn_error(&self.inner.lock())),
        }
    }

    /// Opens a `direct-tcpip` channel (RFC 4254 §7.2) to `host:port`.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        originator: &str,
        originator_port: u16,
    ) -> Result<Channel, Error> {
        let mut extra = Vec::new();
        extra.put_str(host);
        extra.put_u32(u32::from(port));
        extra.put_str(originator);
        extra.put_u32(u32::from(originator_port));
        self.open_channel("direct-tcpip", &extra).await
    }

    /// Waits for the next channel the peer opens; `None` once the connection has ended.
    pub async fn next_channel(&self) -> Option<IncomingChannel> {
        poll_fn(|cx| {
            let mut s = self.inner.lock();
            if let Some(p) = s.incoming.pop_front() {
                return Poll::Ready(Some(IncomingChannel {
                    inner: self.inner.clone(),
                    id: p.id,
                    kind: p.kind,
                    extra: p.extra,
                    answered: false,
                }));
            }
            if s.conn.is_closed() {
                return Poll::Ready(None);
            }
            s.incoming_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Sends a global request; with `want_reply`, returns the peer's answer.
    pub async fn global_request(
        &self,
        name: &str,
        want_reply: bool,
        payload: &[u8],
    ) -> Result<Option<(bool, Bytes)>, Error> {
        let rx = {
            let mut s = self.inner.lock();
            s.conn.send_global_request(name, want_reply, payload)?;
            if want_reply {
                let (tx, rx) = oneshot::channel();
                s.globals.push_back(tx);
                Some(rx)
            } else {
                None
            }
        };
        self.kick();
        match rx {
            None => Ok(None),
            Some(rx) => match rx.await {
                Ok(r) => Ok(Some(r)),
                Err(_) => Err(conn_error(&self.inner.lock())),
            },
        }
    }

    /// Starts a re-key now.
    pub fn rekey(&self) -> Result<(), Error> {
        self.inner.lock().conn.rekey(Instant::now())?;
        self.kick();
        Ok(())
    }

    /// How many key exchanges have completed.
    pub fn kex_count(&self) -> u32 {
        self.inner.lock().kex_count
    }

    /// Whether strict KEX is in force.
    pub fn is_strict_kex(&self) -> bool {
        self.inner.lock().conn.is_strict_kex()
    }

    /// Ends the connection with `SSH_MSG_DISCONNECT`.
    pub fn disconnect(&self) {
        let mut s = self.inner.lock();
        s.conn.disconnect("bye");
        s.dispatch();
        drop(s);
        self.kick();
    }

    /// Waits until the connection has ended and returns why.
    pub async fn closed(&self) -> Error {
        poll_fn(|cx| {
            let mut s = self.inner.lock();
            if s.conn.is_closed() {
                return Poll::Ready(conn_error(&s));
            }
            s.closed_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// A channel the peer asked to open. Dropping it unanswered refuses it.
pub struct IncomingChannel {
    inner: Arc<Owner>,
    id: ChannelId,
    kind: String,
    extra: Bytes,
    answered: bool,
}

impl std::fmt::Debug for IncomingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingChannel")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl IncomingChannel {
    /// The channel type (any name).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Type-specific bytes after the standard fields.
    pub fn extra(&self) -> &Bytes {
        &self.extra
    }

    /// For `direct-tcpip`: the requested host and port.
    pub fn direct_tcpip_target(&self) -> Option<(String, u16)> {
        let mut r = crate::wire::Reader::new(&self.extra);
        let host = r.utf8().ok()?.to_owned();
        let port = u16::try_from(r.u32().ok()?).ok()?;
        Some((host, port))
    }

    /// Accepts the channel.
    pub fn accept(mut self) -> Result<Channel, Error> {
        self.answered = true;
        self.inner.lock().conn.accept_channel(self.id)?;
        self.inner.write_notify.notify_one();
        Ok(Channel {
            inner: self.inner.clone(),
            id: self.id,
        })
    }

    /// Refuses the channel with an RFC 4254 reason code and description.
    pub fn reject(mut self, reason: u32, description: &str) -> Result<(), Error> {
        self.answered = true;
        self.refuse(reason, description)
    }

    fn refuse(&self, reason: u32, description: &str) -> Result<(), Error> {
        let mut s = self.inner.lock();
        s.slots.remove(&self.id);
        s.conn.reject_channel(self.id, reason, description)?;
        drop(s);
        self.inner.write_notify.notify_one();
        Ok(())
    }
}

impl Drop for IncomingChannel {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.refuse(1, "refused");
        }
    }
}

/// An open channel: a byte stream (`AsyncRead + AsyncWrite`, back-pressured by the SSH
/// windows), plus stderr, channel requests and replies. Dropping it closes the channel.
pub struct Channel {
    inner: Arc<Owner>,
    id: ChannelId,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// The local channel number.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Sends a channel request of any name with raw `payload` bytes; with `want_reply`,
    /// returns whether the peer answered `CHANNEL_SUCCESS`.
    pub async fn request(
        &self,
        name: &str,
        want_reply: bool,
        payload: &[u8],
    ) -> Result<bool, Error> {
        let rx = {
            let mut s = self.inner.lock();
            s.conn
                .send_channel_request(self.id, name, want_reply, payload)?;
            if want_reply {
                let (tx, rx) = oneshot::channel();
                if let Some(slot) = s.slots.get_mut(&self.id) {
                    slot.replies.push_back(tx);
                }
                Some(rx)
            } else {
                None
            }
        };
        self.inner.write_notify.notify_one();
        match rx {
            None => Ok(true),
            Some(rx) => rx.await.map_err(|_| {
                let s = self.inner.lock();
                if s.conn.is_closed() {
                    conn_error(&s)
                } else {
                    Error::Channel("channel closed".into())
                }
            }),
        }
    }

    /// Waits for the next channel request from the peer; `None` once the channel closed.
    pub async fn next_request(&self) -> Option<ChannelRequest> {
        poll_fn(|cx| {
            let mut s = self.inner.lock();
            let closed = s.conn.is_closed();
            let Some(slot) = s.slots.get_mut(&self.id) else {
                return Poll::Ready(None);
            };
            if let Some(r) = slot.requests.pop_front() {
                return Poll::Ready(Some(r));
            }
            if slot.closed || closed {
                return Poll::Ready(None);
            }
            slot.request_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Answers the oldest want-reply request received on this channel.
    pub fn reply(&self, success: bool) -> Result<(), Error> {
        self.inner
            .lock()
            .conn
            .reply_channel_request(self.id, success)?;
        self.inner.write_notify.notify_one();
        Ok(())
    }

    /// Writes all of `data` as extended data type 1 (stderr).
    pub async fn write_stderr(&self, data: &[u8]) -> Result<(), Error> {
        let mut off = 0;
        while off < data.len() {
            let n = poll_fn(|cx| self.poll_send(cx, Some(1), &data[off..])).await?;
            off += n;
        }
        Ok(())
    }

    /// The stderr bytes received so far (at most 64 KiB are kept).
    pub fn stderr(&self) -> Vec<u8> {
        self.inner
            .lock()
            .slots
            .get(&self.id)
            .map(|s| s.stderr.clone())
            .unwrap_or_default()
    }

    /// Sends EOF.
    pub fn eof(&self) -> Result<(), Error> {
        self.inner.lock().conn.send_eof(self.id)?;
        self.inner.write_notify.notify_one();
        Ok(())
    }

    /// Closes the channel (also done on drop).
    pub fn close(&self) -> Result<(), Error> {
        self.inner.lock().conn.close_channel(self.id)?;
        self.inner.write_notify.notify_one();
        Ok(())
    }

    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        code: Option<u32>,
        buf: &[u8],
    ) -> Poll<Result<usize, Error>> {
        let Poll::Ready(mut s) = self.inner.poll_lock(cx) else {
            return Poll::Pending;
        };
        if s.conn.is_closed() {
            return Poll::Ready(Err(conn_error(&s)));
        }
        if s.slots.get(&self.id).is_none_or(|sl| sl.closed) {
            return Poll::Ready(Err(Error::Channel("channel closed".into())));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if s.conn.pending_output() > OUTPUT_HIGH_WATER {
            s.drain_wakers.push(cx.waker().clone());
            return Poll::Pending;
        }
        let n = s.conn.send_data(self.id, code, buf)?;
        if n == 0 {
            if let Some(slot) = s.slots.get_mut(&self.id) {
                slot.write_waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        drop(s);
        self.inner.write_notify.notify_one();
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Poll::Ready(mut s) = self.inner.poll_lock(cx) else {
            return Poll::Pending;
        };
        let closed = s.conn.is_closed();
        let err = if closed { Some(conn_error(&s)) } else { None };
        let Some(slot) = s.slots.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(front) = slot.data.front_mut() else {
                break;
            };
            let k = front.len().min(buf.remaining());
            buf.put_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                slot.data.pop_front();
            }
            n += k;
        }
        if n > 0 {
            let _ = s.conn.consume(self.id, n);
            let kick = s.conn.pending_output() > 0;
            drop(s);
            if kick {
                self.inner.write_notify.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if slot.eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = err {
            return Poll::Ready(match e {
                Error::Closed => Ok(()),
                e => Err(e.into()),
            });
        }
        slot.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, None, buf).map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.inner.lock().conn.send_eof(self.id);
        self.inner.write_notify.notify_one();
        match r {
            Ok(()) | Err(Error::Channel(_)) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        let _ = s.conn.close_channel(self.id);
        let remove = match s.slots.get_mut(&self.id) {
            Some(slot) => {
                slot.handle_dropped = true;
                let pending: usize = slot.data.drain(..).map(|b| b.len()).sum();
                let closed = slot.closed;
                let _ = s.conn.consume(self.id, pending);
                closed
            }
            None => false,
        };
        if remove || s.conn.is_closed() {
            s.slots.remove(&self.id);
        }
        drop(s);
        self.inner.write_notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn inner() -> Inner {
        let key = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .unwrap();
        let user = crate::KeyPair::new(&key).unwrap();
        let config = Arc::new(ClientConfig::new("alice", Arc::new(user)));
        Inner::new(Connection::client(config, Instant::now()), None)
    }

    #[test]
    fn a_task_that_finds_the_lock_taken_is_woken_when_it_is_released() {
        let inner = inner();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        // Free: taken at once, and releasing it wakes nobody.
        let Poll::Ready(g) = inner.poll_lock(&mut cx) else {
            panic!("a free lock is taken at once");
        };
        drop(g);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);

        // Held: the poller gets Pending (its thread is not parked) and is woken once on
        // release; polling again then takes it.
        let held = inner.lock();
        assert!(inner.poll_lock(&mut cx).is_pending());
        assert!(inner.poll_lock(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "one wake, not one per poll"
        );
        assert!(inner.poll_lock(&mut cx).is_ready());
    }
}

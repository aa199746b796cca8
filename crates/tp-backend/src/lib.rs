//! Storage for the tp cluster.
//!
//! **One job:** a [`Backend`] trait (get, range, create, put, compare-and-swap, delete,
//! expiry, watch with revisions) with SQLite as the embedded default ([`SqliteBackend`])
//! and an in-memory implementation for tests ([`MemoryBackend`]), plus a
//! [`conformance`] suite every implementation must pass.
//!
//! **Never depends on:** any other tp crate, tonic, or any network crate. It stores opaque
//! values under byte-string keys; it knows nothing of roles, users or protobuf.
//!
//! # Model
//!
//! - Keys are byte strings ordered bytewise (Teleport-style paths such as
//!   `/roles/admin`); values are opaque bytes. An empty key is rejected.
//! - Each backend has one global revision counter. Every successful put or delete (of
//!   one key) takes the next revision, so revisions are dense: revision `n` is exactly
//!   one [`Event`]. A failed operation takes none and emits nothing.
//! - An [`Item`] may carry an expiry time. From that instant on it is invisible to every
//!   read and treated as absent by every conditional write. A sweep
//!   ([`Backend::sweep_expired`], run periodically in the background when
//!   [`Options::sweep_interval`] is set) deletes expired items and emits a
//!   [`Event::Delete`] for each, so watchers learn about expiry too.
//! - [`Backend::watch`] replays the retained history after a revision and then follows
//!   live changes, in revision order, with no gap and no duplicate. A watcher that falls
//!   more than [`Options::watch_buffer`] events behind gets [`Error::Lagged`] (never
//!   unbounded memory) and resumes with `watch(Some(position))`; a watch from before the
//!   retained history ([`Options::history_limit`] events) gets [`Error::Compacted`].
//!
//! # Design notes
//!
//! - The trait is object-safe (`Arc<dyn Backend>`): methods return boxed futures
//!   ([`BackendFuture`]). The SQLite backend does all its SQLite work on tokio's blocking
//!   pool (`spawn_blocking`), never on a worker thread; the sweeper is a plain thread.
//! - A page of [`Backend::range`] is a named [`Page`] rather than a tuple, so the
//!   continuation key cannot be confused with an item key.
//! - Writes return the new revision only (not the item), so a large value is never
//!   copied back to a caller who already has it.
//! - Time comes from a [`Clock`], so tests (and the conformance suite) decide expiry
//!   with a [`ManualClock`] instead of sleeping.
//! - [`Item`]'s `Debug` prints the value's length, not its bytes: values include private
//!   keys.

mod backend;
mod clock;
pub mod conformance;
mod error;
mod memory;
mod options;
mod sqlite;
mod sweeper;
mod types;
mod watch;

pub use backend::{Backend, BackendFuture, Durability, NewItem};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, KeyDisplay, Result};
pub use memory::MemoryBackend;
pub use options::Options;
pub use sqlite::SqliteBackend;
pub use types::{Event, Item, Page};
pub use watch::Watcher;

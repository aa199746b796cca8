//! Items, events, pages, and the checks every implementation applies to its inputs.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, KeyDisplay, Result};

/// A stored value with its key, revision and expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The key.
    pub key: Vec<u8>,
    /// The opaque value.
    pub value: Vec<u8>,
    /// The revision of the write that stored this version.
    pub revision: i64,
    /// When the item stops being visible, if ever.
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for Item {
    // The value is left out: stored values include private keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item")
            .field("key", &KeyDisplay(&self.key).to_string())
            .field("value_len", &self.value.len())
            .field("revision", &self.revision)
            .field("expires", &self.expires)
            .finish()
    }
}

impl Item {
    /// Whether the item has expired at `now` (expiry is inclusive: an item expiring at
    /// `t` is gone at `t`).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// A change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An item was written (created, updated or replaced).
    Put(Item),
    /// An item was deleted (explicitly, by `delete_range`, or by the expiry sweep).
    Delete {
        /// The deleted key.
        key: Vec<u8>,
        /// The revision of the deletion.
        revision: i64,
    },
}

impl Event {
    /// The revision of this change.
    pub fn revision(&self) -> i64 {
        match self {
            Self::Put(item) => item.revision,
            Self::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put(item) => &item.key,
            Self::Delete { key, .. } => key,
        }
    }
}

/// One page of a [`range`](crate::Backend::range).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The live items, in key order.
    pub items: Vec<Item>,
    /// When more items follow: the key to pass as `start_after` for the next page (the
    /// last key of this page).
    pub next: Option<Vec<u8>>,
}

/// What a single-key write requires of the live item at its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cond {
    /// Anything (put, delete-if-present is `Present`).
    Any,
    /// No live item (create).
    Absent,
    /// A live item (update, delete).
    Present,
    /// A live item at this revision (compare-and-swap, compare-and-delete).
    Revision(i64),
}

/// Checks `cond` against the revision of the live item at `key`, if any.
pub(crate) fn check_cond(key: &[u8], live_revision: Option<i64>, cond: Cond) -> Result<()> {
    match (cond, live_revision) {
        (Cond::Any, _) | (Cond::Absent, None) | (Cond::Present, Some(_)) => Ok(()),
        (Cond::Absent, Some(_)) => Err(Error::AlreadyExists { key: key.to_vec() }),
        (Cond::Present | Cond::Revision(_), None) => Err(Error::NotFound { key: key.to_vec() }),
        (Cond::Revision(expected), Some(actual)) if actual == expected => Ok(()),
        (Cond::Revision(expected), Some(actual)) => Err(Error::CompareFailed {
            key: key.to_vec(),
            expected,
            actual,
        }),
    }
}

/// Rejects an empty key.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("the key is empty"));
    }
    Ok(())
}

/// Nanoseconds since the epoch, if `t` is between 1970 and 2262 (what every backend can
/// store).
pub(crate) fn to_nanos(t: SystemTime) -> Option<i64> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
}

/// The inverse of [`to_nanos`].
pub(crate) fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// Checks a write's key and expiry; returns the expiry in nanoseconds.
pub(crate) fn check_write(key: &[u8], expires: Option<SystemTime>) -> Result<Option<i64>> {
    check_key(key)?;
    match expires {
        None => Ok(None),
        Some(t) => to_nanos(t).map(Some).ok_or_else(|| {
            Error::invalid(format!(
                "key {}: expiry {t:?} is outside 1970..2262",
                KeyDisplay(key)
            ))
        }),
    }
}

/// Checks a range's limit.
pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(Error::invalid("the range limit is 0 (expected at least 1)"));
    }
    Ok(())
}

/// Checks a watch's start revision.
pub(crate) fn check_from(from: Option<i64>) -> Result<()> {
    match from {
        Some(r) if r < 0 => Err(Error::invalid(format!(
            "cannot watch from revision {r} (expected 0 or more)"
        ))),
        _ => Ok(()),
    }
}

/// The exclusive upper bound of the keys starting with `prefix`, or `None` when there
/// is none (an empty prefix, or one of only `0xff` bytes).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a"), Some(b"/b".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn nanos_round_trip_and_bounds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(from_nanos(to_nanos(t).unwrap_or(-1)), t);
        assert_eq!(to_nanos(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(
            to_nanos(UNIX_EPOCH + Duration::from_secs(300 * 365 * 86_400)),
            None
        );
    }

    #[test]
    fn item_debug_hides_the_value() {
        let item = Item {
            key: b"/k".to_vec(),
            value: b"secret".to_vec(),
            revision: 1,
            expires: None,
        };
        let s = format!("{item:?}");
        assert!(!s.contains("secret") && s.contains("value_len: 6"), "{s}");
    }
}

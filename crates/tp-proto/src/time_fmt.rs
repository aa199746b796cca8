//! RFC 3339 timestamps as Go's `time.Time` writes them in JSON and YAML.

use prost_types::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats a protobuf timestamp in UTC with as many fractional digits as needed, e.g.
/// `2025-03-01T10:00:00Z` or `2025-03-01T10:00:00.5Z` (Go's `RFC3339Nano`).
pub(crate) fn format_rfc3339(t: &Timestamp) -> Result<String, String> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|e| format!("timestamp out of range: {e}"))?;
    dt.format(&Rfc3339)
        .map_err(|e| format!("timestamp cannot be written as RFC 3339: {e}"))
}

/// Parses an RFC 3339 time (any offset) into a protobuf timestamp.
pub(crate) fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    let dt = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| {
            format!("invalid time {s:?}: {e} (expected RFC 3339, e.g. 2025-03-01T10:00:00Z)")
        })?
        .to_offset(UtcOffset::UTC);
    let nanos = dt.unix_timestamp_nanos();
    Ok(Timestamp {
        // Any RFC 3339 year (0000-9999) fits an i64 of seconds.
        seconds: (nanos.div_euclid(1_000_000_000)) as i64,
        nanos: (nanos.rem_euclid(1_000_000_000)) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_round_trips() {
        let s = format_rfc3339(&crate::GO_ZERO_TIMESTAMP).unwrap();
        assert_eq!(s, "0001-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339(&s).unwrap(), crate::GO_ZERO_TIMESTAMP);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let t = parse_rfc3339("2025-03-01T12:00:00+02:00").unwrap();
        assert_eq!(format_rfc3339(&t).unwrap(), "2025-03-01T10:00:00Z");
        let t = parse_rfc3339("2025-03-01T10:00:00.25Z").unwrap();
        assert_eq!(t.nanos, 250_000_000);
        assert_eq!(format_rfc3339(&t).unwrap(), "2025-03-01T10:00:00.25Z");
    }

    #[test]
    fn bad_time_says_what_was_expected() {
        let e = parse_rfc3339("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}

//! Go's duration strings, as Teleport reads and writes them (`types.Duration`).
//!
//! Teleport prints durations with Go's `time.Duration.String` (`8h0m0s`, `30m0s`,
//! `1.5s`, `250ms`) and parses them with Go's `time.ParseDuration` grammar
//! (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units `ns us µs ms s m h`). Both directions are
//! reproduced here exactly, so a value survives a round trip through either side.

use std::fmt;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (expected e.g. \"30m\", \"8h\" or \"1h30m\")",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const M: u64 = 60 * S;
const H: u64 = 60 * M;

/// Formats nanoseconds the way Go's `time.Duration.String` does.
///
/// ```
/// use tp_proto::duration::format_go;
/// assert_eq!(format_go(8 * 3600 * 1_000_000_000), "8h0m0s");
/// assert_eq!(format_go(90 * 60 * 1_000_000_000), "1h30m0s");
/// assert_eq!(format_go(1_500_000), "1.5ms");
/// assert_eq!(format_go(0), "0s");
/// ```
pub fn format_go(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < S {
        if u == 0 {
            return "0s".into();
        }
        let (prec, unit) = if u < US {
            (0, "ns")
        } else if u < MS {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (int, frac) = split_frac(u, prec);
        out.push_str(&format!("{int}{frac}{unit}"));
        return out;
    }
    let (secs, frac) = split_frac(u, 9);
    let mins = secs / 60;
    if mins > 0 {
        let hours = mins / 60;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        out.push_str(&format!("{}m", mins % 60));
    }
    out.push_str(&format!("{}{frac}s", secs % 60));
    out
}

/// Splits `v` into `v / 10^prec` and the fraction `.ddd` with trailing zeros dropped
/// (empty when the fraction is zero), as Go's `fmtFrac`.
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    if prec == 0 {
        return (v, String::new());
    }
    let p = 10u64.pow(prec);
    let digits = format!("{:0width$}", v % p, width = prec as usize);
    let digits = digits.trim_end_matches('0');
    let frac = if digits.is_empty() {
        String::new()
    } else {
        format!(".{digits}")
    };
    (v / p, frac)
}

/// Parses a Go duration string into nanoseconds.
///
/// ```
/// use tp_proto::duration::parse_go;
/// assert_eq!(parse_go("30m").unwrap(), 30 * 60 * 1_000_000_000);
/// assert_eq!(parse_go("1h30m").unwrap(), 90 * 60 * 1_000_000_000);
/// assert_eq!(parse_go("8h0m0s").unwrap(), 8 * 3600 * 1_000_000_000);
/// assert!(parse_go("8 hours").is_err());
/// ```
pub fn parse_go(input: &str) -> Result<i64, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut s = input;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(err("expected a number"));
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_str, rest) = s.split_at(int_len);
        let int: u64 = if int_str.is_empty() {
            0
        } else {
            int_str.parse().map_err(|_| err("number too large"))?
        };
        s = rest;
        // Fraction.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in s.as_bytes()[..frac_len].iter() {
                if overflow {
                    continue;
                }
                let d = u64::from(b - b'0');
                match frac.checked_mul(10).and_then(|f| f.checked_add(d)) {
                    Some(f) if f < (1 << 53) => {
                        frac = f;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            s = &s[frac_len..];
        }
        if int_str.is_empty() && frac_len == 0 {
            return Err(err("expected digits"));
        }
        // Unit.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(err("missing unit"));
        }
        let (unit_str, rest) = s.split_at(unit_len);
        s = rest;
        let unit = match unit_str {
            "ns" => NS,
            "us" | "\u{00b5}s" | "\u{03bc}s" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            _ => return Err(err("unknown unit")),
        };
        let mut v = int.checked_mul(unit).ok_or_else(|| err("overflow"))?;
        if frac > 0 {
            // As in Go: float64 keeps nanosecond accuracy for fractions of an hour.
            v = v
                .checked_add((frac as f64 * (unit as f64 / scale)) as u64)
                .ok_or_else(|| err("overflow"))?;
        }
        total = total.checked_add(v).ok_or_else(|| err("overflow"))?;
        if total > i64::MAX as u64 {
            return Err(err("overflow"));
        }
    }
    // total <= i64::MAX was checked in the loop.
    let total = total as i64;
    Ok(if neg { -total } else { total })
}

/// Teleport's lenient boolean strings (`api/utils.ParseBool`): yes/yeah/y/true/1/on and
/// no/nope/n/false/0/off, case-insensitive.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "yeah" | "y" | "true" | "1" | "on" => Some(true),
        "no" | "nope" | "n" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * 60 * 1_000_000_000 + 5_000_000_000, "4m5s"),
            (4 * 60 * 1_000_000_000 + 5_001_000_000, "4m5.001s"),
            (
                5 * 3600 * 1_000_000_000 + 6 * 60 * 1_000_000_000 + 7_001_000_000,
                "5h6m7.001s",
            ),
            (8 * 60 * 1_000_000_000 + 1, "8m0.000000001s"),
            (30 * 3600 * 1_000_000_000, "30h0m0s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (-1_500_000_000, "-1.5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(format_go(*ns), *want, "{ns}");
        }
    }

    #[test]
    fn parses_like_go() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5_000_000_000),
            ("30m", 1_800_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-2m3.4s", -123_400_000_000),
            ("100ms", 100_000_000),
            ("1µs", 1_000),
            ("1us", 1_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go(s), Ok(*want), "{s}");
        }
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "1h 30m",
            ".s",
            "-",
            "9999999999999999999h",
            "3000000h",
        ] {
            assert!(parse_go(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn error_names_input_and_expectation() {
        let e = parse_go("8 hours").unwrap_err().to_string();
        assert!(e.contains("\"8 hours\""), "{e}");
        assert!(e.contains("expected"), "{e}");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ns in any::<i64>().prop_filter("i64::MIN has no positive twin", |v| *v != i64::MIN)) {
            prop_assert_eq!(parse_go(&format_go(ns)), Ok(ns));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = parse_go(&s);
        }
    }
}

//! A small DER writer for the certificate parts tp encodes on every issuance: elements
//! are appended to one buffer, and a constructed element's length is written once its
//! contents are known, so encoding a subject allocates little.

use crate::Error;

/// Universal tags used here.
pub(crate) mod tag {
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// A tag and a definite length in DER's shortest form: the bytes and how many are used.
fn header(tag: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = tag;
    if len < 0x80 {
        h[1] = len as u8;
        return (h, 2);
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let n = bytes.len() - skip;
    h[1] = 0x80 | n as u8;
    h[2..2 + n].copy_from_slice(&bytes[skip..]);
    (h, 2 + n)
}

/// Appends a primitive element: `tag`, length, `content`.
pub(crate) fn primitive(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    let (h, n) = header(tag, content.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(content);
}

/// Appends a constructed element whose contents `f` appends.
pub(crate) fn constructed(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    f(out);
    let (h, n) = header(tag, out.len() - start);
    out.splice(start..start, h[..n].iter().copied());
}

/// The content octets of a dotted object identifier (`2.5.4.3` is `55 04 03`).
pub(crate) fn oid_content(dotted: &str) -> Result<Vec<u8>, Error> {
    let bad = || {
        Error::invalid(
            "identity",
            format!("attribute type {dotted:?} is not a dotted OID"),
        )
    };
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [first, second, rest @ ..] = arcs.as_slice() else {
        return Err(bad());
    };
    if *first > 2 || (*first < 2 && *second >= 40) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(arcs.len() + 4);
    let head = first
        .checked_mul(40)
        .and_then(|v| v.checked_add(*second))
        .ok_or_else(bad)?;
    for arc in std::iter::once(head).chain(rest.iter().copied()) {
        let mut groups = [0u8; 10];
        let mut n = 0;
        let mut v = arc;
        loop {
            groups[n] = (v & 0x7f) as u8;
            n += 1;
            v >>= 7;
            if v == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, head) in [
            (0usize, vec![0x04, 0x00]),
            (127, vec![0x04, 0x7f]),
            (128, vec![0x04, 0x81, 0x80]),
            (255, vec![0x04, 0x81, 0xff]),
            (256, vec![0x04, 0x82, 0x01, 0x00]),
            (70_000, vec![0x04, 0x83, 0x01, 0x11, 0x70]),
        ] {
            let mut out = Vec::new();
            primitive(&mut out, 0x04, &vec![7; len]);
            assert_eq!(out[..head.len()], head[..], "length {len}");
            assert_eq!(out.len(), head.len() + len);
            let mut nested = Vec::new();
            constructed(&mut nested, 0x30, |w| w.extend_from_slice(&vec![7; len]));
            assert_eq!(nested[0], 0x30);
            assert_eq!(nested[1..head.len()], head[1..], "length {len}");
            assert_eq!(nested.len(), head.len() + len);
        }
    }

    #[test]
    fn oids_encode_as_yasna_does() {
        for dotted in [
            "2.5.4.3",
            "1.3.9999.1.7",
            "1.2.840.113549.1.1.11",
            "2.999.3",
            "1.3.6.1.4.1.311.60.2.1.3",
        ] {
            let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
            let want = yasna::construct_der(|w| {
                w.write_oid(&yasna::models::ObjectIdentifier::from_slice(&arcs))
            });
            let mut got = Vec::new();
            primitive(&mut got, tag::OID, &oid_content(dotted).unwrap());
            assert_eq!(got, want, "{dotted}");
        }
        for bad in ["", "2", "1.x", "3.1", "1.40", "2.18446744073709551615"] {
            assert!(oid_content(bad).is_err(), "{bad:?}");
        }
    }
}

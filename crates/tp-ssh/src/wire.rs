//! SSH wire encoding (RFC 4251 §5): a bounds-checked reader and an appending writer.

use crate::error::Error;

/// A cursor over a message payload. Every read is bounds-checked and fails with
/// [`Error::Protocol`]; nothing here can panic on peer input.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

fn short() -> Error {
    Error::Protocol("truncated message".into())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let (&b, rest) = self.buf.split_first().ok_or_else(short)?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        Ok(self.u8()? != 0)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(short());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// An SSH `string` (u32 length + bytes).
    pub(crate) fn string(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// An SSH `string` that must be UTF-8.
    pub(crate) fn utf8(&mut self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.string()?)
            .map_err(|_| Error::Protocol("invalid UTF-8 in string".into()))
    }

    /// An SSH `name-list`.
    pub(crate) fn name_list(&mut self) -> Result<Vec<String>, Error> {
        let s = self.utf8()?;
        if s.is_empty() {
            return Ok(Vec::new());
        }
        Ok(s.split(',').map(str::to_owned).collect())
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Appending encoders for SSH wire types.
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_bool(&mut self, v: bool);
    fn put_u32(&mut self, v: u32);
    fn put_raw(&mut self, v: &[u8]);
    fn put_string(&mut self, v: &[u8]);
    fn put_str(&mut self, v: &str);
    fn put_mpint(&mut self, v: &[u8]);
    fn put_name_list(&mut self, v: &[&str]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_raw(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    fn put_string(&mut self, v: &[u8]) {
        // Lengths of our own messages are bounded well below u32::MAX.
        self.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.extend_from_slice(v);
    }
    fn put_str(&mut self, v: &str) {
        self.put_string(v.as_bytes());
    }
    /// An unsigned big-endian integer as an SSH `mpint` (leading zeros stripped, a zero
    /// byte prepended when the high bit is set).
    fn put_mpint(&mut self, v: &[u8]) {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        let v = &v[start..];
        if v.first().is_some_and(|&b| b & 0x80 != 0) {
            self.put_u32(u32::try_from(v.len() + 1).unwrap_or(u32::MAX));
            self.push(0);
            self.extend_from_slice(v);
        } else {
            self.put_string(v);
        }
    }
    fn put_name_list(&mut self, v: &[&str]) {
        self.put_str(&v.join(","));
    }
}

/// Strips an `mpint` to a fixed-width unsigned big-endian integer of `width` bytes.
pub(crate) fn mpint_to_fixed(v: &[u8], width: usize) -> Result<Vec<u8>, Error> {
    if v.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(Error::Protocol("negative mpint".into()));
    }
    let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let v = &v[start..];
    if v.len() > width {
        return Err(Error::Protocol("mpint too large".into()));
    }
    let mut out = vec![0u8; width];
    out[width - v.len()..].copy_from_slice(v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_encoding() {
        let mut v = Vec::new();
        v.put_mpint(&[0, 0, 0x80, 1]);
        assert_eq!(v, [0, 0, 0, 3, 0, 0x80, 1]);
        let mut v = Vec::new();
        v.put_mpint(&[0, 0]);
        assert_eq!(v, [0, 0, 0, 0]);
        assert_eq!(mpint_to_fixed(&[0, 0x80, 1], 4).unwrap(), [0, 0, 0x80, 1]);
        assert!(mpint_to_fixed(&[0x80], 4).is_err());
    }
}

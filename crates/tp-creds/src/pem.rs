//! PEM blocks (RFC 7468), read leniently the way Go's `encoding/pem` does: any label,
//! surrounding text ignored, whitespace inside the base64 body allowed.

use base64::Engine as _;

use crate::Error;

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    /// The label between `BEGIN ` and the closing dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Bodies may be private keys: print only the label and size.
        f.debug_struct("Block")
            .field("label", &self.label)
            .field("len", &self.der.len())
            .finish()
    }
}

fn label_of(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let label = rest.strip_suffix("-----")?;
    Some(label.to_string())
}

/// Decodes every PEM block in `text`, in order. `origin` names the source in errors.
pub fn parse_all(text: &str, origin: &str) -> Result<Vec<Block>, Error> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if !line.starts_with("-----BEGIN ") {
            continue;
        }
        let label = label_of(line, "-----BEGIN ").ok_or_else(|| {
            Error::invalid(
                origin,
                format!("line {}: malformed PEM header {line:?}", n + 1),
            )
        })?;
        blocks.push(parse_body(&mut lines, &label, n + 1, origin)?);
    }
    Ok(blocks)
}

/// Reads body lines after a `BEGIN` line up to the matching `END` line.
pub(crate) fn parse_body<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    label: &str,
    begin_line: usize,
    origin: &str,
) -> Result<Block, Error> {
    let mut body = String::new();
    for (n, line) in lines.by_ref() {
        let line = line.trim();
        if line.starts_with("-----END ") {
            let end = label_of(line, "-----END ").unwrap_or_default();
            if end != label {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "line {}: PEM block {label:?} (line {begin_line}) ends with {end:?}",
                        n + 1
                    ),
                ));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| {
                    Error::invalid(
                        origin,
                        format!("PEM block {label:?} at line {begin_line}: bad base64: {e}"),
                    )
                })?;
            if der.is_empty() {
                return Err(Error::invalid(
                    origin,
                    format!("PEM block {label:?} at line {begin_line} is empty"),
                ));
            }
            return Ok(Block {
                label: label.to_string(),
                der,
            });
        }
        if line.contains(':') {
            // RFC 1421 headers (e.g. Proc-Type: 4,ENCRYPTED): encrypted keys are not supported.
            return Err(Error::invalid(
                origin,
                format!(
                    "PEM block {label:?} at line {begin_line} has headers ({line:?}); encrypted keys are not supported"
                ),
            ));
        }
        body.push_str(line);
    }
    Err(Error::invalid(
        origin,
        format!("PEM block {label:?} at line {begin_line} has no END line (truncated?)"),
    ))
}

/// Encodes `der` as a PEM block with 64-column lines and a trailing newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 34);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_surrounding_text_ignored() {
        let pem = format!(
            "junk\n{}more junk\n{}",
            encode("CERTIFICATE", &[1, 2, 3]),
            encode("X", &[9; 100])
        );
        let blocks = parse_all(&pem, "test").unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, [1, 2, 3]);
        assert_eq!(blocks[1].der, [9; 100]);
    }

    #[test]
    fn truncated_and_mismatched_blocks_are_named() {
        let full = encode("CERTIFICATE", &[1, 2, 3]);
        let cut = &full[..full.len() - 20];
        let e = parse_all(cut, "/tmp/x.pem").unwrap_err().to_string();
        assert!(
            e.starts_with("/tmp/x.pem: ") && e.contains("no END line"),
            "{e}"
        );
        let bad = full.replace("END CERTIFICATE", "END PRIVATE KEY");
        let e = parse_all(&bad, "f").unwrap_err().to_string();
        assert!(e.contains("ends with \"PRIVATE KEY\""), "{e}");
        let e = parse_all("-----BEGIN A-----\n!!!\n-----END A-----\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad base64"), "{e}");
    }
}

//! A bidirectional copy that costs little while idle.
//!
//! tokio's `copy_bidirectional` holds two 8 KiB buffers for the life of the copy; a proxy
//! holding thousands of idle tunnel connections pays that for each. [`splice`] holds a
//! small inline buffer per direction while traffic is light, moves to a heap buffer that
//! doubles (up to 64 KiB) while reads fill it, and drops it when reads are small again.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The inline buffer per direction.
const SMALL: usize = 512;
/// The first heap buffer once reads fill the inline one.
const FIRST_HEAP: usize = 16 * 1024;
/// The largest heap buffer.
const MAX_HEAP: usize = 64 * 1024;

/// Copies `a` to `b` and `b` to `a` until both directions reach end of stream; each
/// direction shuts down its writer when its reader ends. Returns the bytes copied
/// (`a`→`b`, `b`→`a`); the first error ends both.
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    tokio::try_join!(pump(&mut ar, &mut bw), pump(&mut br, &mut aw))
}

async fn pump<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut small = [0u8; SMALL];
    let mut big: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let buf: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
        let n = r.read(buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        total += n as u64;
        if n == buf.len() {
            // Reads fill the buffer: take (or double) a heap buffer.
            let next = if big.is_empty() {
                FIRST_HEAP
            } else {
                (big.len() * 2).min(MAX_HEAP)
            };
            if next != big.len() {
                big = vec![0u8; next];
            }
        } else if n < SMALL && !big.is_empty() {
            // Traffic is light again: back to the inline buffer.
            big = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_in_order_and_ends_each_direction() {
        let (mut a, mut a_far) = tokio::io::duplex(1 << 16);
        let (mut b, mut b_far) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move { splice(&mut a, &mut b).await });
        // Sizes that cross every buffer step, with a byte pattern to check order.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(7_001) {
                a_far.write_all(chunk).await.unwrap();
            }
            a_far.write_all(b"x").await.unwrap();
            a_far.shutdown().await.unwrap();
            let mut back = Vec::new();
            a_far.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        b_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..data.len()], &data[..]);
        assert_eq!(&got[data.len()..], b"x");
        b_far.write_all(b"reply").await.unwrap();
        b_far.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let (ab, ba) = task.await.unwrap().unwrap();
        assert_eq!((ab, ba), (data.len() as u64 + 1, 5));
    }
}

//! Randomness for values that are published once used: certificate serial numbers and
//! SSH certificate nonces. It comes from the operating system in 4 KiB blocks and is
//! handed out from a per-thread buffer, each byte once, so issuing a certificate makes
//! no system call for them (an Auth server issues thousands per second).
//!
//! Keys and tokens never come from here: they are secrets and take their randomness
//! from the operating system directly. A process that forks without exec must not use
//! this module on both sides of the fork (the child would repeat the parent's bytes);
//! tp's programs do not fork.

use std::cell::RefCell;

use ring::rand::SecureRandom as _;

use crate::Error;

const BLOCK: usize = 4096;

struct Pool {
    bytes: Box<[u8; BLOCK]>,
    /// Bytes before this index have been handed out (and zeroed).
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        bytes: Box::new([0; BLOCK]),
        used: BLOCK,
    });
}

fn os_fill(out: &mut [u8]) -> Result<(), Error> {
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::invalid("randomness", "the system random source failed"))
}

/// Fills `out` with random bytes for a value that will be public (a serial, a nonce).
pub fn fill_public(out: &mut [u8]) -> Result<(), Error> {
    if out.len() > BLOCK / 4 {
        return os_fill(out);
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if BLOCK - pool.used < out.len() {
            os_fill(&mut pool.bytes[..])?;
            pool.used = 0;
        }
        let start = pool.used;
        let end = start + out.len();
        out.copy_from_slice(&pool.bytes[start..end]);
        pool.bytes[start..end].fill(0);
        pool.used = end;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn values_never_repeat_across_refills_and_threads() {
        let draw = || {
            (0..1000)
                .map(|_| {
                    let mut v = [0u8; 16];
                    fill_public(&mut v).unwrap();
                    v
                })
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(draw);
        let mut seen: HashSet<[u8; 16]> = draw().into_iter().collect();
        assert_eq!(seen.len(), 1000, "within a thread (several refills)");
        for v in other.join().unwrap() {
            assert!(seen.insert(v), "a value repeated across threads");
        }
        // Neither all zeros (a handed-out region) nor a fixed pattern.
        assert!(!seen.contains(&[0u8; 16]));
        let mut big = vec![0u8; BLOCK];
        fill_public(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }
}

//! The test files `mptcp serve` offers under `/files/<size>`: sizes as the
//! URL spells them, and deterministic pseudo-random bytes that any client
//! can regenerate, with their SHA-256 (no I/O).

use std::fmt;

/// Largest file served: 100 GB.
pub const MAX_SIZE: u64 = 100_000_000_000;

/// The sizes `/files/` lists, as check.mptcp.dev offers them.
pub const LISTED: [&str; 4] = ["1M", "10M", "100M", "1000M"];

/// Header carrying the SHA-256 of the whole body (lowercase hex).
pub const HASH_HEADER: &str = "x-content-sha256";

/// Why a `/files/<size>` path names no file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a size: {reason}")]
pub struct BadSize {
    input: String,
    reason: &'static str,
}

/// A size as `/files/<size>` spells it: digits with an optional decimal
/// unit `K`, `M` or `G` (10^3, 10^6, 10^9, like check.mptcp.dev's 1000M),
/// up to [`MAX_SIZE`].
pub fn parse_size(input: &str) -> Result<u64, BadSize> {
    let bad = |reason| BadSize { input: input.to_owned(), reason };
    let (digits, unit) = match input.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&input[..i], c.to_ascii_uppercase()),
        _ => (input, 'B'),
    };
    let scale: u64 = match unit {
        'B' => 1,
        'K' => 1_000,
        'M' => 1_000_000,
        'G' => 1_000_000_000,
        _ => return Err(bad("the unit must be K, M or G")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 12 {
        return Err(bad("expected digits, then K, M or G"));
    }
    let n: u64 = digits.parse().map_err(|_| bad("expected digits"))?;
    let size = n.checked_mul(scale).filter(|s| *s <= MAX_SIZE).ok_or_else(|| bad("over 100G"))?;
    Ok(size)
}

/// Fills `buf` with the file's bytes from `offset` on. Byte `i` of every
/// file is the same: word `i / 8` is [`word`] of its index, little-endian,
/// so any range can be made without the bytes before it.
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut index = offset / 8;
    let within = (offset % 8) as usize;
    let mut rest = buf;
    if within != 0 {
        let take = (8 - within).min(rest.len());
        rest[..take].copy_from_slice(&word(index).to_le_bytes()[within..within + take]);
        rest = &mut rest[take..];
        index += 1;
    }
    // Whole words, a period's run at a time: one load, one xor and one
    // fixed-size store per word, which the compiler vectorises.
    let pool = pool();
    while rest.len() >= 8 {
        let at = (index % POOL_WORDS) as usize;
        let mask = period_mask(index / POOL_WORDS);
        let run = (pool.len() - at).min(rest.len() / 8);
        let (words, after) = rest.split_at_mut(run * 8);
        for (chunk, w) in words.chunks_exact_mut(8).zip(&pool[at..]) {
            chunk.copy_from_slice(&(w ^ mask).to_le_bytes());
        }
        rest = after;
        index += run as u64;
    }
    if !rest.is_empty() {
        let len = rest.len();
        rest.copy_from_slice(&word(index).to_le_bytes()[..len]);
    }
}

/// Words in the pool: 256 KiB, which stays in a core's L2 cache.
const POOL_WORDS: u64 = 1 << 15;

/// Word `index` of every file: word `index % 2^15` of a pool of wyrand
/// outputs, xored with a wyrand mask per 2^15-word period, so no stretch of
/// a file repeats another. About 28 GB/s on one core here; wyrand per word
/// made 8-9 and splitmix64 3.2, when making the bytes was the server's
/// bottleneck on loopback.
pub fn word(index: u64) -> u64 {
    pool()[(index % POOL_WORDS) as usize] ^ period_mask(index / POOL_WORDS)
}

fn period_mask(period: u64) -> u64 {
    wyrand(POOL_WORDS + period)
}

/// The first 2^15 wyrand outputs, made once.
fn pool() -> &'static [u64] {
    static POOL: std::sync::OnceLock<Box<[u64]>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| (0..POOL_WORDS).map(wyrand).collect())
}

/// wyrand's output for the state it has after `n + 1` steps.
fn wyrand(n: u64) -> u64 {
    let state = n.wrapping_add(1).wrapping_mul(0xa076_1d64_78bd_642f);
    let product = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
    (product as u64) ^ ((product >> 64) as u64)
}

/// SHA-256 of the first `size` bytes, in lowercase hex. About 1.5 GB/s
/// (SHA-NI).
pub fn sha256_hex(size: u64) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        fill(done, &mut buf[..n]);
        ctx.update(&buf[..n]);
        done += n as u64;
    }
    Hex(ctx.finish().as_ref()).to_string()
}

/// Lowercase hex of some bytes.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// SHA-256 computed over a body as it streams by, to check it against the
/// server's [`HASH_HEADER`].
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest in lowercase hex.
    pub fn finish_hex(self) -> String {
        Hex(self.0.finish().as_ref()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_with_an_optional_unit() {
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("1000M"), Ok(1_000_000_000));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("3G"), Ok(3_000_000_000));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "M", "1T", "1.5M", "-1", "1M2", "101G", "99999999999999", "１M"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_range_matches_the_whole() {
        // Byte i is byte i % 8 of word i / 8, by definition. 600 kB spans
        // three pool periods (262,144 bytes each).
        let whole: Vec<u8> = (0..600_000u64).map(|i| word(i / 8).to_le_bytes()[(i % 8) as usize]).collect();
        let ranges = [(0, 600_000), (0, 1), (1, 2), (3, 5), (6, 2), (7, 9), (8, 8), (13, 500), (999, 1), (5, 0)];
        let across_periods = [(262_140, 10), (262_143, 262_150), (262_144, 8), (300_001, 299_999)];
        for (offset, len) in ranges.into_iter().chain(across_periods) {
            let mut part = vec![0u8; len];
            fill(offset as u64, &mut part);
            assert_eq!(part, whole[offset..offset + len], "{offset}+{len}");
        }
        assert_ne!(whole[..8], whole[8..16], "words differ");
        assert_ne!(whole[..8], whole[262_144..262_152], "periods differ");
    }

    #[test]
    fn the_words_are_fixed() {
        // Clients may regenerate the bytes, so their definition must not
        // drift (values from an independent Python implementation).
        assert_eq!(word(0), 0xd598_772d_2202_4dac);
        assert_eq!(word(1), 0x0a2f_1db2_5215_6d4f);
        assert_eq!(word(1 << 15), 0x70fe_fd0f_0d57_82a3);
        assert_eq!(word(1 << 40), 0x3c6f_f620_c655_a112);
    }

    #[test]
    fn the_hash_is_of_the_bytes_served() {
        let mut bytes = vec![0u8; 300_000];
        fill(0, &mut bytes);
        let mut h = Sha256::default();
        h.update(&bytes[..1]);
        h.update(&bytes[1..]);
        assert_eq!(h.finish_hex(), sha256_hex(300_000));
        // SHA-256 of nothing.
        assert_eq!(sha256_hex(0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}

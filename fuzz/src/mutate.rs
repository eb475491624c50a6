//! A small seeded mutator for the short runs under `cargo test`: not
//! coverage-guided (AFL++ is, src/bin/afl.rs), but it starts from the
//! corpus, so it reaches past the framing into the parsers in seconds.

/// xorshift64*: reproducible from its seed, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Values that sit on boundaries of lengths and counts.
const INTERESTING: &[u32] = &[
    0,
    1,
    3,
    4,
    5,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// One to four random edits of `input`, sometimes with a piece of `other`.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next_u64() as u8;
            }
            2 if len >= 4 => {
                // An interesting 32-bit value, either byte order.
                let i = rng.below(len - 3);
                let x = INTERESTING[rng.below(INTERESTING.len())];
                let b = if rng.below(2) == 0 {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                v[i..i + 4].copy_from_slice(&b);
            }
            3 if len >= 2 => {
                let i = rng.below(len - 1);
                let x = INTERESTING[rng.below(INTERESTING.len())] as u16;
                v[i..i + 2].copy_from_slice(&x.to_be_bytes());
            }
            4 => {
                // Insert a few random bytes.
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                v.splice(i..i, bytes);
            }
            5 if len > 0 => {
                // Delete a range.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                v.drain(i..i + n);
            }
            6 if len > 0 => {
                // Duplicate a range (repeated fields, repeated messages).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let piece = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, piece);
            }
            7 if !other.is_empty() => {
                // Splice in a piece of another input.
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(128));
                let at = rng.below(len + 1);
                v.splice(at..at, other[i..i + n].iter().copied());
            }
            8 if len > 1 => {
                v.truncate(1 + rng.below(len - 1));
            }
            _ => {}
        }
    }
    v
}

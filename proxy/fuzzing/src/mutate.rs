//! Byte-level mutations for the stable property tests: what libFuzzer does on nightly, in a
//! bounded, seeded form. Structured inputs get past the first checks; mutating them reaches
//! the error paths behind those checks.

use rand::Rng;
use rand::rngs::StdRng;

/// Bytes that change meaning in the formats under test (separators, quotes, digits, hex case,
/// line ends, non-ASCII), more likely to matter than a random byte.
const INTERESTING: &[u8] = b"\0\t\n\r \"%&*+,-./0123456789:;<=>?@AFWZ[]afz~\x7f\x80\xff";

/// One to three mutations of `input`: bit flips, interesting bytes, truncation, deletion,
/// insertion, a splice with `donor`, or a duplicated slice.
pub fn mutate(rng: &mut StdRng, input: &[u8], donor: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        let len = out.len();
        let pos = rng.random_range(0..=len);
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = pos.min(len - 1);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = pos.min(len - 1);
                out[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => out.truncate(pos),
            3 => {
                let end = rng.random_range(pos..=len.min(pos + 16));
                out.drain(pos..end);
            }
            4 => {
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        if rng.random_bool(0.5) {
                            INTERESTING[rng.random_range(0..INTERESTING.len())]
                        } else {
                            rng.random()
                        }
                    })
                    .collect();
                out.splice(pos..pos, bytes);
            }
            5 if !donor.is_empty() => {
                let from = rng.random_range(0..donor.len());
                out.truncate(pos);
                out.extend_from_slice(&donor[from..]);
            }
            6 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                let slice = out[start..end].to_vec();
                let at = rng.random_range(0..=len);
                out.splice(at..at, slice);
            }
            _ => {
                // Interesting byte inserted: the cheapest way to split or join a token.
                let b = INTERESTING[rng.random_range(0..INTERESTING.len())];
                out.insert(pos, b);
            }
        }
    }
    out
}

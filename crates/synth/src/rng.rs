//! A small deterministic RNG (SplitMix64). Pure integer/float arithmetic, so
//! output is identical on every platform; keyed by (seed, stream, index) so
//! any patient can be generated independently and in parallel.

/// SplitMix64's finalizer: a bijection on u64.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// One stream from one seed (for callers that need a single sequence, e.g. test data).
    pub fn seeded(seed: u64) -> Rng {
        Rng::keyed(seed, 0, 0)
    }

    pub fn keyed(seed: u64, stream: u64, index: u64) -> Rng {
        Rng(mix64(
            seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ mix64(!index),
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Approximately normal (Irwin–Hall of 4 uniforms; no libm calls).
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let s = self.f64() + self.f64() + self.f64() + self.f64();
        mean + (s - 2.0) * 1.732_050_807_568_877_2 * sd
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::keyed(1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::keyed(1, 2, 3).next_u64(),
            Rng::keyed(1, 2, 4).next_u64()
        );
        assert_ne!(
            Rng::keyed(1, 2, 3).next_u64(),
            Rng::keyed(2, 2, 3).next_u64()
        );
        let mut r = Rng::keyed(9, 9, 9);
        let mean = (0..20_000).map(|_| r.normal(10.0, 2.0)).sum::<f64>() / 20_000.0;
        assert!((mean - 10.0).abs() < 0.1, "{mean}");
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}

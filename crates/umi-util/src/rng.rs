//! A seeded random stream that gives the same numbers on every platform.

/// The splitmix64 increment (2^64 / φ, odd).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64 (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number generators"):
/// a tiny seeded stream that gives the same numbers on every platform (unlike `rand`'s
/// `SmallRng`, whose algorithm differs between 64-bit and wasm32 targets), so that LoRA
/// initialisation, sampled generations and batch orders agree natively and in the browser for
/// the same seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream for `seed` and `name` (FNV-1a of the name mixed with the seed): independent
    /// streams for the same seed under different names.
    pub fn new(seed: u64, name: &str) -> Self {
        let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |acc, b| {
            (acc ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Self(fnv ^ seed.wrapping_mul(GOLDEN_GAMMA))
    }

    /// The stream whose state starts at `seed` itself (no name mixed in): the stream of
    /// [`SplitMix64::shuffle`]'s historical seeding, kept so that batch orders stay as they were.
    pub fn from_state(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// Output `index` (from 0) of the stream `SplitMix64::from_state(state)`, computed directly
    /// (the state advances by a constant, so no output depends on those before it): for
    /// filling a buffer in parallel with the numbers a sequential stream would give.
    #[inline(always)]
    pub fn at(state: u64, index: u64) -> u64 {
        mix(state.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Shuffles `items` in place (Fisher–Yates from the last position down, index `next % (i + 1)`):
    /// the same order for the same stream on every platform.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// splitmix64's output function of a state.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of splitmix64 seeded with 0, as the reference C code
    /// (https://prng.di.unimi.it/splitmix64.c) prints them.
    #[test]
    fn matches_the_reference_stream() {
        let mut s = SplitMix64::from_state(0);
        assert_eq!(s.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(s.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(s.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn any_output_can_be_computed_directly() {
        let mut s = SplitMix64::from_state(42);
        for i in 0..5 {
            assert_eq!(SplitMix64::at(42, i), s.next_u64());
        }
    }

    #[test]
    fn named_streams_differ_and_repeat() {
        let a: Vec<u64> = {
            let mut s = SplitMix64::new(7, "a");
            (0..4).map(|_| s.next_u64()).collect()
        };
        let mut again = SplitMix64::new(7, "a");
        assert_eq!(a, (0..4).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(a[0], SplitMix64::new(7, "b").next_u64());
        assert_ne!(a[0], SplitMix64::new(8, "a").next_u64());
    }

    #[test]
    fn unit_is_in_range_and_shuffle_permutes() {
        let mut s = SplitMix64::new(1, "unit");
        assert!((0..1000).map(|_| s.unit()).all(|u| (0.0..1.0).contains(&u)));
        let mut v: Vec<u32> = (0..50).collect();
        SplitMix64::from_state(3).shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let mut w: Vec<u32> = (0..50).collect();
        SplitMix64::from_state(3).shuffle(&mut w);
        assert_eq!(v, w);
    }
}

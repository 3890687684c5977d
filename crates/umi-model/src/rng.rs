//! A seeded random stream that gives the same numbers on every platform.

/// splitmix64 (Steele et al. 2014): a tiny seeded stream that gives the same numbers on every
/// platform (unlike `rand`'s `SmallRng`, whose algorithm differs between 64-bit and wasm32
/// targets), so that LoRA initialisation and sampled generations agree natively and in the
/// browser for the same seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream for `seed` and `name` (FNV-1a of the name mixed with the seed): independent
    /// streams for the same seed under different names.
    pub fn new(seed: u64, name: &str) -> Self {
        let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |acc, b| {
            (acc ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Self(fnv ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

//! Dequantization of GGML tensor types to f32, following the block layouts of ggml's
//! `ggml-common.h` / `ggml-quants.c` (`dequantize_row_*`).

use half::f16;

/// The GGML tensor types umi reads. Ids are those of `enum ggml_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 4-bit, blocks of 32 with an f16 scale: `x = (q - 8)·d`.
    Q4_0,
    /// 4-bit, blocks of 32 with f16 scale and minimum: `x = q·d + m`.
    Q4_1,
    /// 8-bit, blocks of 32 with an f16 scale: `x = q·d`.
    Q8_0,
    /// 4-bit k-quant, super-blocks of 256 with 6-bit sub-block scales and minimums.
    Q4K,
    /// 6-bit k-quant, super-blocks of 256 with 8-bit sub-block scales.
    Q6K,
    /// bfloat16.
    BF16,
}

/// The types [`GgmlType::from_id`] accepts, for error messages.
pub const SUPPORTED_GGML_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K";

impl GgmlType {
    /// Maps a `ggml_type` id to a supported type.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// `(weights per block, bytes per block)`.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes needed for `n` weights, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (per_block, bytes) = self.block();
        n.is_multiple_of(per_block).then(|| n / per_block * bytes)
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantizes `n` weights of type `ty` from `bytes`.
///
/// # Errors
///
/// A message when `n` is not a whole number of blocks or `bytes` has the wrong length.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let expected = ty.bytes_for(n).ok_or_else(|| {
        format!(
            "{n} weights are not a whole number of {ty:?} blocks of {}",
            ty.block().0
        )
    })?;
    if bytes.len() != expected {
        return Err(format!(
            "{ty:?} data for {n} weights needs {expected} bytes, found {}",
            bytes.len()
        ));
    }
    let (_, block_bytes) = ty.block();
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => {
            for block in bytes.chunks_exact(block_bytes) {
                let d = f16_at(block, 0);
                let qs = &block[2..18];
                out.extend(qs.iter().map(|q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for block in bytes.chunks_exact(block_bytes) {
                let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                let qs = &block[4..20];
                out.extend(qs.iter().map(|q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(block_bytes) {
                let d = f16_at(block, 0);
                out.extend(block[2..34].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        GgmlType::Q4K => {
            // block_q4_K: d (f16), dmin (f16), scales[12] (6-bit scale/min pairs), qs[128]
            for block in bytes.chunks_exact(block_bytes) {
                let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
                let scales = &block[4..16];
                let qs = &block[16..144];
                for (j, q) in qs.chunks_exact(32).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
                    out.extend(q.iter().map(|&v| d1 * (v & 0x0F) as f32 - min1));
                    out.extend(q.iter().map(|&v| d2 * (v >> 4) as f32 - min2));
                }
            }
        }
        GgmlType::Q6K => {
            // block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8), d (f16)
            for block in bytes.chunks_exact(block_bytes) {
                let (ql, qh) = (&block[0..128], &block[128..192]);
                let scales = &block[192..208];
                let d = f16_at(block, 208);
                for half_block in 0..2 {
                    let ql = &ql[64 * half_block..];
                    let qh = &qh[32 * half_block..];
                    let sc = &scales[8 * half_block..];
                    let mut y = [0f32; 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                    out.extend_from_slice(&y);
                }
            }
        }
    }
    Ok(out)
}

/// The `j`-th 6-bit (scale, min) pair of a Q4_K super-block (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// How a quantized matrix (`qmatmul::QMatrix`, native builds) holds its weights: GGML's block formats (`ggml-quants.c`), each block of
/// [`Q8_BLOCK`] consecutive inputs of a row with its own constants, kept in f32 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// `w = d·q`, `q = round(w / d)` in `-127..=127`, `d = max|w| / 127`: 36 bytes per block
    /// (1.125 per weight).
    Q8_0,
    /// `w = d·q + m`, `q` in `0..=15` (two per byte), `m = min w`, `d = (max w − m) / 15`:
    /// 24 bytes per block (0.75 per weight). A GGUF file's Q4_1 blocks come back with the
    /// same `q` (the file's `d` and `m` are its own block's minimum and step).
    Q4_1,
}

impl QFormat {
    /// GGML's name of the format (`Q8_0`, `Q4_1`).
    pub fn name(self) -> &'static str {
        match self {
            QFormat::Q8_0 => "Q8_0",
            QFormat::Q4_1 => "Q4_1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_hand_worked_block() {
        // d = 0.5, m = -1.0, nibbles: low = 0..16, high = 15..=0
        let mut block = Vec::new();
        block.extend(f16::from_f32(0.5).to_le_bytes());
        block.extend(f16::from_f32(-1.0).to_le_bytes());
        block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let x = dequantize(GgmlType::Q4_1, &block, 32).unwrap();
        assert_eq!(x[0], -1.0);
        assert_eq!(x[15], 15.0 * 0.5 - 1.0);
        assert_eq!(x[16], 15.0 * 0.5 - 1.0);
        assert_eq!(x[31], -1.0);
    }

    #[test]
    fn q8_0_hand_worked_block() {
        let mut block = Vec::new();
        block.extend(f16::from_f32(0.25).to_le_bytes());
        block.extend((0..32i8).map(|i| (i - 16) as u8));
        let x = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
        assert_eq!(x[0], -4.0);
        assert_eq!(x[31], 3.75);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(
            dequantize(GgmlType::Q4_0, &[0; 17], 32)
                .unwrap_err()
                .contains("needs 18 bytes")
        );
        assert!(
            dequantize(GgmlType::Q4K, &[0; 144], 100)
                .unwrap_err()
                .contains("whole number")
        );
    }
}

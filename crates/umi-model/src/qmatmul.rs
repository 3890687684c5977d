//! Quantized weights for CPU inference: a projection's weight kept in one of GGML's block
//! formats ([`QFormat`]: `Q8_0`, 8-bit values with a scale per block of 32 inputs, or `Q4_1`,
//! 4-bit values with a scale and a minimum per block, both with f32 instead of f16 block
//! constants), multiplied with activations quantized to Q8_0, as llama.cpp's
//! `ggml_vec_dot_q8_0_q8_0` and `ggml_vec_dot_q4_1_q8_1` do.
//!
//! Decoding is memory-bound: every new token reads every weight once. Q8_0 reads 1.125 bytes
//! per weight and Q4_1 0.75 instead of f32's 4, and the integer dot products run in SIMD
//! registers (AVX-512 or AVX2 when the CPU has them, chosen at run time by `pulp`; portable
//! code otherwise). The result differs from the f32 product by the roundings (weights to 8 or
//! 4 bits, activations to 8 bits); `tests/tests/qmatmul.rs` bounds it against the f32 model.
//!
//! On CPUs with AVX-512 VNNI, Q8_0 matrices whose rows come in groups of 16 are held
//! interleaved ([`QMatrix::interleaved`]): one `vpdpbusd` then adds 4 products to each of 16
//! rows, a token's 16 results come out of one register, and the kernel runs every input this
//! way, a prompt's included (slices of [`TOKENS_PER_PASS`] tokens): each token's result is
//! the same bit for bit however many tokens share a product, and SmolLM2's prompts prefill
//! 1.1–1.3× faster than in f32. Inputs of many rows against the other layouts are multiplied
//! in f32 with slices of the matrix dequantized on the fly ([`QMatrix::for_dense_slices`]),
//! so a quantized model holds no f32 copy of its weights at all.
//!
//! Inference only: no gradient flows through a quantized projection (training keeps f32).

use rayon::prelude::*;

pub use crate::weights::QFormat;

/// Inputs per quantization block (both formats).
pub const Q8_BLOCK: usize = 32;

/// The most tokens [`QMatrix::matmul_many`] multiplies in one pass over the weights: a longer
/// input (a prompt) goes in slices of this many tokens, whose values stay in the core's cache
/// while every row of a task reads them. SmolLM2 prefill on 2 threads, 2026-12-05: all 2,048
/// tokens at once 387–419 tok/s, slices of 128 441–450, of 64 471–487, of 32 457–463.
pub const TOKENS_PER_PASS: usize = 64;

/// The most weights [`QMatrix::for_dense_slices`] dequantizes at once (8 MiB of f32).
pub const DENSE_SLICE_VALUES: usize = 1 << 21;

/// A `[rows, cols]` matrix (rows = outputs, cols = inputs, PyTorch's `[out, in]`) in a
/// [`QFormat`]: each row in blocks of [`Q8_BLOCK`] consecutive values.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

/// A [`QMatrix`] quantized as its rows arrive ([`QMatrix::builder`]).
#[derive(Debug)]
pub struct QMatrixBuilder {
    format: QFormat,
    interleave: bool,
    /// The rows quantized so far.
    matrix: QMatrix,
    /// The rows the matrix will have.
    rows: usize,
    /// Rows that do not yet fill a [`GROUP`] of the interleaved layout.
    pending: Vec<f32>,
}

impl QMatrixBuilder {
    /// Quantizes the next whole rows, `data.len() / cols` of them, row-major.
    ///
    /// # Panics
    ///
    /// If `data` is not a whole number of rows or brings more rows than the matrix has: a
    /// caller's bug (the loader reads each tensor's rows once, in order).
    pub fn push(&mut self, data: &[f32]) {
        let cols = self.matrix.cols;
        assert!(
            data.len().is_multiple_of(cols),
            "QMatrixBuilder::push: {} values are not whole rows of {cols}",
            data.len()
        );
        let arrived = self.matrix.rows + (self.pending.len() + data.len()) / cols;
        assert!(
            arrived <= self.rows,
            "QMatrixBuilder::push: {arrived} rows of a {}-row matrix",
            self.rows
        );
        if !self.interleave {
            self.append(data);
            return;
        }
        // the interleaved layout quantizes whole groups of rows: complete the pending group
        // first, then every whole group of `data`, and keep the rest for the next push
        let group = GROUP * cols;
        let mut data = data;
        if !self.pending.is_empty() {
            let take = (group - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < group {
                return;
            }
            let pending = std::mem::take(&mut self.pending);
            self.append(&pending);
        }
        let whole = data.len() / group * group;
        self.append(&data[..whole]);
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Quantizes rows of `data` (whole groups when interleaving) after those already held.
    fn append(&mut self, data: &[f32]) {
        if data.is_empty() {
            return;
        }
        let cols = self.matrix.cols;
        let rows = data.len() / cols;
        let part = QMatrix::quantize(self.format, data, rows, cols, self.interleave);
        match (&mut self.matrix.blocks, part.blocks) {
            (Blocks::Q8_0 { qs, scales }, Blocks::Q8_0 { qs: q, scales: d }) => {
                qs.extend_from_slice(&q);
                scales.extend_from_slice(&d);
            }
            (Blocks::Q8_0x16 { qs, scales }, Blocks::Q8_0x16 { qs: q, scales: d }) => {
                qs.extend_from_slice(&q);
                scales.extend_from_slice(&d);
            }
            (
                Blocks::Q4_1 { qs, scales, mins },
                Blocks::Q4_1 {
                    qs: q,
                    scales: d,
                    mins: m,
                },
            ) => {
                qs.extend_from_slice(&q);
                scales.extend_from_slice(&d);
                mins.extend_from_slice(&m);
            }
            _ => unreachable!("a part is quantized in its matrix's layout"),
        }
        self.matrix.rows += rows;
    }

    /// The matrix, once every row has arrived.
    ///
    /// # Panics
    ///
    /// If rows are missing: a caller's bug.
    pub fn finish(self) -> QMatrix {
        assert!(
            self.matrix.rows == self.rows && self.pending.is_empty(),
            "QMatrixBuilder::finish: {} of {} rows arrived",
            self.matrix.rows + self.pending.len() / self.matrix.cols,
            self.rows
        );
        self.matrix
    }
}

/// The blocks of a [`QMatrix`], row-major; `scales` (and `mins`) hold one value per block.
#[derive(Debug, Clone)]
enum Blocks {
    /// `rows × cols` values.
    Q8_0 { qs: Vec<i8>, scales: Vec<f32> },
    /// Q8_0 with [`GROUP`] rows interleaved block by block, for the VNNI kernel
    /// ([`x16_vnni`]): one 512-bit register holds 4 consecutive values of each of 16 rows, so
    /// one `vpdpbusd` adds 4 products to each row's sum and a block's 16 sums end in the 16
    /// lanes of one register (no horizontal sums; a token's result does not depend on the
    /// other tokens or on how a prompt is split). Group `g`'s block `b` is 512 bytes at
    /// `(g·blocks + b)·512`: 8 chunks of 64 bytes, chunk `c` holding values `4c..4c + 4` of
    /// rows `16g..16g + 16` (4 bytes per row), each offset to an unsigned byte (`q ⊕ 0x80` =
    /// `q + 128`, what `vpdpbusd` multiplies as unsigned); `scales[(g·blocks + b)·16 + i]` is
    /// row `16g + i`'s scale of block `b`. Same bytes as [`Blocks::Q8_0`].
    Q8_0x16 { qs: Vec<u8>, scales: Vec<f32> },
    /// `rows × cols / 2` bytes, 16 per block in GGML's order: byte `j` holds value `j` in its
    /// low nibble and value `j + 16` in its high nibble.
    Q4_1 {
        qs: Vec<u8>,
        scales: Vec<f32>,
        mins: Vec<f32>,
    },
}

impl QMatrix {
    /// Quantizes a row-major `[rows, cols]` matrix; `None` when `cols` is not a multiple of
    /// [`Q8_BLOCK`] (the projection then stays f32). Q8_0 is held interleaved for the VNNI
    /// kernel where the CPU has it and `rows` is a multiple of [`GROUP`]
    /// ([`QMatrix::interleaved`]), row by row otherwise; the values are the same.
    ///
    /// # Panics
    ///
    /// If `data.len() != rows * cols`.
    pub fn from_rows(format: QFormat, data: &[f32], rows: usize, cols: usize) -> Option<Self> {
        assert_eq!(
            data.len(),
            rows * cols,
            "QMatrix::from_rows: shape mismatch"
        );
        if cols == 0 || !cols.is_multiple_of(Q8_BLOCK) {
            return None;
        }
        let interleave = rows.is_multiple_of(GROUP) && interleaves_q8_0();
        Some(Self::quantize(format, data, rows, cols, interleave))
    }

    /// A builder that quantizes a `[rows, cols]` matrix handed over a few rows at a time
    /// ([`QMatrixBuilder::push`]): a model's weights are converted as they are read, so
    /// loading never holds a whole tensor in f32 (peak memory: the quantized model and a few
    /// rows). The result equals [`QMatrix::from_rows`] of all the rows. `None` when `cols` is
    /// not a multiple of [`Q8_BLOCK`].
    pub fn builder(format: QFormat, rows: usize, cols: usize) -> Option<QMatrixBuilder> {
        if cols == 0 || !cols.is_multiple_of(Q8_BLOCK) {
            return None;
        }
        let interleave = rows.is_multiple_of(GROUP) && interleaves_q8_0();
        Some(Self::builder_in(format, rows, cols, interleave))
    }

    /// [`QMatrix::builder`] with the layout chosen as [`QMatrix::quantize`]'s `interleave`
    /// (Q8_0 only; `rows` a multiple of [`GROUP`]); `cols` a multiple of [`Q8_BLOCK`].
    fn builder_in(format: QFormat, rows: usize, cols: usize, interleave: bool) -> QMatrixBuilder {
        let interleave = interleave && format == QFormat::Q8_0;
        let (values, blocks) = (rows * cols, rows * cols / Q8_BLOCK);
        let blocks = match format {
            QFormat::Q8_0 if interleave => Blocks::Q8_0x16 {
                qs: Vec::with_capacity(values),
                scales: Vec::with_capacity(blocks),
            },
            QFormat::Q8_0 => Blocks::Q8_0 {
                qs: Vec::with_capacity(values),
                scales: Vec::with_capacity(blocks),
            },
            QFormat::Q4_1 => Blocks::Q4_1 {
                qs: Vec::with_capacity(values / 2),
                scales: Vec::with_capacity(blocks),
                mins: Vec::with_capacity(blocks),
            },
        };
        QMatrixBuilder {
            format,
            interleave,
            matrix: Self {
                rows: 0,
                cols,
                blocks,
            },
            rows,
            pending: Vec::new(),
        }
    }

    /// [`QMatrix::from_rows`] with the layout chosen: `interleave` keeps Q8_0 weights in
    /// [`Blocks::Q8_0x16`] (`rows` must be a multiple of [`GROUP`]), otherwise row by row.
    fn quantize(format: QFormat, data: &[f32], rows: usize, cols: usize, interleave: bool) -> Self {
        let blocks = match format {
            QFormat::Q8_0 => {
                let mut qs = vec![0i8; rows * cols];
                let scales = quantize_blocks(data, &mut qs);
                if interleave {
                    let (qs, scales) = interleave_groups(&qs, &scales, rows, cols);
                    Blocks::Q8_0x16 { qs, scales }
                } else {
                    Blocks::Q8_0 { qs, scales }
                }
            }
            QFormat::Q4_1 => {
                let n = data.len() / Q8_BLOCK;
                let (mut qs, mut scales, mut mins) =
                    (vec![0u8; data.len() / 2], vec![0f32; n], vec![0f32; n]);
                for (b, w) in data.chunks_exact(Q8_BLOCK).enumerate() {
                    (scales[b], mins[b]) = quantize_block_q4_1(w, &mut qs[b * 16..(b + 1) * 16]);
                }
                Blocks::Q4_1 { qs, scales, mins }
            }
        };
        Self { rows, cols, blocks }
    }

    /// Quantizes a row-major `[cols, rows]` matrix stored input-major (burn's `[in, out]`
    /// layout of a linear weight), transposing it first.
    ///
    /// # Panics
    ///
    /// If `data.len() != rows * cols`.
    pub fn from_columns(format: QFormat, data: &[f32], d_in: usize, d_out: usize) -> Option<Self> {
        assert_eq!(
            data.len(),
            d_in * d_out,
            "QMatrix::from_columns: shape mismatch"
        );
        let mut t = vec![0f32; data.len()];
        for (i, row) in data.chunks_exact(d_out).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                t[o * d_in + i] = v;
            }
        }
        Self::from_rows(format, &t, d_out, d_in)
    }

    /// The format the weights are held in.
    pub fn format(&self) -> QFormat {
        match self.blocks {
            Blocks::Q8_0 { .. } | Blocks::Q8_0x16 { .. } => QFormat::Q8_0,
            Blocks::Q4_1 { .. } => QFormat::Q4_1,
        }
    }

    /// Whether the weights are in the interleaved layout of the VNNI kernel (Q8_0 on a CPU
    /// with AVX-512 VNNI, rows a multiple of [`GROUP`]): its integer kernel then serves inputs
    /// of any number of rows.
    pub fn interleaved(&self) -> bool {
        matches!(self.blocks, Blocks::Q8_0x16 { .. })
    }

    /// Output width (rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width (columns).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the quantized values and block constants take.
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q8_0 { qs, scales } => qs.len() + 4 * scales.len(),
            Blocks::Q8_0x16 { qs, scales } => qs.len() + 4 * scales.len(),
            Blocks::Q4_1 { qs, scales, mins } => qs.len() + 4 * (scales.len() + mins.len()),
        }
    }

    /// The matrix as f32 again (`q · d`, or `q · d + m`), row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows_into(0, &mut out);
        out
    }

    /// Rows `first..first + n` as f32, written row-major into `out` (`[n, cols]`,
    /// `n = out.len() / cols`).
    ///
    /// # Panics
    ///
    /// If `out.len()` is not a multiple of `cols` or the rows run past the matrix.
    pub fn dequantize_rows_into(&self, first: usize, out: &mut [f32]) {
        let n = out.len() / self.cols.max(1);
        assert!(
            n * self.cols == out.len() && first + n <= self.rows,
            "QMatrix::dequantize_rows_into: rows {first}..{} of a [{}, {}] matrix into {} values",
            first + n,
            self.rows,
            self.cols,
            out.len()
        );
        let first_block = first * self.cols / Q8_BLOCK;
        match &self.blocks {
            Blocks::Q8_0 { qs, scales } => {
                let qs = &qs[first * self.cols..(first + n) * self.cols];
                for ((o, q), &d) in out
                    .chunks_exact_mut(Q8_BLOCK)
                    .zip(qs.chunks_exact(Q8_BLOCK))
                    .zip(&scales[first_block..])
                {
                    for (o, &q) in o.iter_mut().zip(q) {
                        *o = f32::from(q) * d;
                    }
                }
            }
            Blocks::Q8_0x16 { qs, scales } => {
                let blocks = self.cols / Q8_BLOCK;
                for (r, out) in (first..first + n).zip(out.chunks_exact_mut(self.cols)) {
                    let (g, i) = (r / GROUP, r % GROUP);
                    for (b, out) in out.chunks_exact_mut(Q8_BLOCK).enumerate() {
                        let gb = g * blocks + b;
                        let w = &qs[gb * GROUP_BLOCK_BYTES..(gb + 1) * GROUP_BLOCK_BYTES];
                        let d = scales[gb * GROUP + i];
                        for (k, o) in out.iter_mut().enumerate() {
                            let q = (w[x16_offset(i, k)] ^ 0x80).cast_signed();
                            *o = f32::from(q) * d;
                        }
                    }
                }
            }
            Blocks::Q4_1 { qs, scales, mins } => {
                let qs = &qs[first * self.cols / 2..(first + n) * self.cols / 2];
                for ((o, q), (&d, &m)) in out
                    .chunks_exact_mut(Q8_BLOCK)
                    .zip(qs.chunks_exact(Q8_BLOCK / 2))
                    .zip(scales[first_block..].iter().zip(&mins[first_block..]))
                {
                    let (low, high) = o.split_at_mut(Q8_BLOCK / 2);
                    for ((l, h), &q) in low.iter_mut().zip(high).zip(q) {
                        *l = f32::from(q & 0x0F) * d + m;
                        *h = f32::from(q >> 4) * d + m;
                    }
                }
            }
        }
    }

    /// The rows `ids` as f32, row-major `[ids.len(), cols]`: an embedding lookup in a
    /// quantized table (llama.cpp's `get_rows` on a quantized `token_embd`).
    ///
    /// # Panics
    ///
    /// If an id is not below `rows`.
    pub fn gather_rows(&self, ids: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; ids.len() * self.cols];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(self.cols.max(1))) {
            assert!(
                id < self.rows,
                "QMatrix::gather_rows: row {id} of a matrix with {} rows",
                self.rows
            );
            self.dequantize_rows_into(id, row);
        }
        out
    }

    /// `x · Wᵀ` in f32 against the dequantized matrix, for inputs of many rows (a prompt),
    /// where the product is compute-bound and f32 GEMM beats the integer dot products: the
    /// weights are dequantized a slice of output rows at a time (at most
    /// [`DENSE_SLICE_VALUES`] values, on all threads), so no f32 copy of the whole matrix
    /// is ever held. `gemm(x, w_slice)` computes `x · w_sliceᵀ` for a `[n, cols]` slice; the
    /// results are the slices' outputs in order.
    ///
    /// # Shapes
    ///
    /// - w_slice given to `gemm`: `[n, cols]` row-major, `n ≤ rows`
    pub fn for_dense_slices<T>(&self, mut gemm: impl FnMut(Vec<f32>, usize) -> T) -> Vec<T> {
        let slice_rows = (DENSE_SLICE_VALUES / self.cols.max(1)).clamp(1, self.rows.max(1));
        (0..self.rows)
            .step_by(slice_rows)
            .map(|first| {
                let n = slice_rows.min(self.rows - first);
                let mut w = vec![0f32; n * self.cols];
                let rows_per_task = 32;
                w.par_chunks_mut(rows_per_task * self.cols)
                    .enumerate()
                    .for_each(|(task, out)| {
                        self.dequantize_rows_into(first + task * rows_per_task, out)
                    });
                gemm(w, n)
            })
            .collect()
    }

    /// `x · Wᵀ`: each of the `tokens` rows of `x` (`[tokens, cols]`, row-major) is quantized to
    /// Q8_0 and multiplied with every row of the matrix, on all of rayon's threads.
    ///
    /// # Shapes
    ///
    /// - x: `[tokens, cols]`
    /// - output: `[tokens, rows]`
    ///
    /// # Panics
    ///
    /// If `x.len() != tokens * cols`.
    pub fn matmul(&self, x: &[f32], tokens: usize) -> Vec<f32> {
        Self::matmul_many(&[self], x, tokens)
            .pop()
            .expect("one product per matrix")
    }

    /// `x · Wᵢᵀ` for several matrices that read the same input (a layer's q/k/v or gate/up
    /// projections): `x` is quantized once and all the products share one parallel pass, so
    /// the thread pool starts once instead of once per matrix. The matrices may be in
    /// different formats.
    ///
    /// # Shapes
    ///
    /// - x: `[tokens, cols]`
    /// - output i: `[tokens, ws[i].rows()]`
    ///
    /// # Panics
    ///
    /// If `ws` is empty, the matrices' widths differ, or `x.len() != tokens * cols`.
    pub fn matmul_many(ws: &[&Self], x: &[f32], tokens: usize) -> Vec<Vec<f32>> {
        let cols = ws.first().expect("QMatrix::matmul_many: no matrix").cols;
        assert!(
            ws.iter().all(|w| w.cols == cols),
            "QMatrix::matmul_many: the matrices' widths differ"
        );
        assert_eq!(
            x.len(),
            tokens * cols,
            "QMatrix::matmul: x has the wrong size"
        );
        if tokens > TOKENS_PER_PASS {
            // a long prompt a slice of tokens at a time, so that the tokens' values stay in
            // cache while every row reads them (each token's results are the same either way)
            let mut outs: Vec<Vec<f32>> = ws
                .iter()
                .map(|w| Vec::with_capacity(tokens * w.rows))
                .collect();
            for part in x.chunks(TOKENS_PER_PASS * cols) {
                let products = Self::matmul_many(ws, part, part.len() / cols);
                for (out, product) in outs.iter_mut().zip(products) {
                    out.extend(product);
                }
            }
            return outs;
        }
        let (outs, rows_per_task) = Self::run_tasks(ws, x, tokens);
        if tokens == 1 {
            return outs;
        }
        // to `[tokens, rows]`: an interleaved matrix's tasks wrote `[tokens, rows of the
        // task]` (runs of rows to copy), the others `[rows of the task, tokens]`
        // (written token after token, task after task: no zeroed matrix to fill in)
        ws.iter()
            .zip(outs)
            .map(|(w, by_task)| {
                let mut out = Vec::with_capacity(tokens * w.rows);
                let parts = || by_task.chunks(rows_per_task * tokens);
                for t in 0..tokens {
                    for part in parts() {
                        let n = part.len() / tokens;
                        if matches!(w.blocks, Blocks::Q8_0x16 { .. }) {
                            out.extend_from_slice(&part[t * n..(t + 1) * n]);
                        } else {
                            out.extend(part.chunks_exact(tokens).map(|r| r[t]));
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// [`QMatrix::matmul`] with each token's products in a vector of its own (`tokens` of
    /// `[rows]`): the same values, built from the kernels' output in one pass, with no
    /// `[tokens, rows]` matrix in between. For the LM head of a decode step, whose rows of
    /// logits go to each sequence's sampler: 6 SmolLM2 sequences' logits are 1.2 MB, which
    /// the tensor path copied about five times on the main thread while the other waited.
    ///
    /// # Panics
    ///
    /// As [`QMatrix::matmul`].
    pub fn matmul_by_token(&self, x: &[f32], tokens: usize) -> Vec<Vec<f32>> {
        assert_eq!(
            x.len(),
            tokens * self.cols,
            "QMatrix::matmul: x has the wrong size"
        );
        if tokens > TOKENS_PER_PASS {
            return self
                .matmul(x, tokens)
                .chunks(self.rows)
                .map(<[f32]>::to_vec)
                .collect();
        }
        let (mut outs, rows_per_task) = Self::run_tasks(&[self], x, tokens);
        let by_task = outs.pop().expect("one product");
        if tokens == 1 {
            return vec![by_task];
        }
        // each token's row grows task after task (the tasks hold consecutive rows, in order)
        let mut rows: Vec<Vec<f32>> = (0..tokens).map(|_| Vec::with_capacity(self.rows)).collect();
        for part in by_task.chunks(rows_per_task * tokens) {
            let n = part.len() / tokens;
            if matches!(self.blocks, Blocks::Q8_0x16 { .. }) {
                for (row, run) in rows.iter_mut().zip(part.chunks_exact(n)) {
                    row.extend_from_slice(run);
                }
            } else {
                for (t, row) in rows.iter_mut().enumerate() {
                    row.extend(part.chunks_exact(tokens).map(|r| r[t]));
                }
            }
        }
        rows
    }

    /// The kernels of [`QMatrix::matmul_many`] for at most [`TOKENS_PER_PASS`] tokens: each
    /// matrix's products as its tasks wrote them (an interleaved matrix's tasks `[tokens, rows
    /// of the task]`, the others' `[rows of the task, tokens]`, task after task; `[rows]` for
    /// one token), and the rows per task.
    fn run_tasks(ws: &[&Self], x: &[f32], tokens: usize) -> (Vec<Vec<f32>>, usize) {
        let cols = ws[0].cols;
        crate::ops::awake::keep_awake();
        let blocks = cols / Q8_BLOCK;
        let mut xq = vec![0i8; x.len()];
        let xd = quantize_blocks(x, &mut xq);
        // Q4_1's minimum multiplies the sum of a block's activations: `d_x · Σ q_x` per block
        // (what GGML's Q8_1 stores as `s`).
        let xs: Vec<f32> = if ws.iter().any(|w| w.format() == QFormat::Q4_1) {
            xq.chunks_exact(Q8_BLOCK)
                .zip(&xd)
                .map(|(q, &d)| d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32)
                .collect()
        } else {
            Vec::new()
        };
        // Work in chunks of output rows, each reading its weights once for every token:
        // `[rows, tokens]` here, transposed at the end when there is more than one token.
        let any_x16 = ws
            .iter()
            .any(|w| matches!(w.blocks, Blocks::Q8_0x16 { .. }));
        let rows_per_task = (16_384 / cols).clamp(1, 64);
        // an interleaved matrix's tasks are whole groups of rows
        let rows_per_task = if any_x16 {
            rows_per_task.next_multiple_of(GROUP)
        } else {
            rows_per_task
        };
        let x16 = if any_x16 {
            X16Input::new(&xq, &xd, cols, tokens)
        } else {
            X16Input::default()
        };
        let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; w.rows * tokens]).collect();
        let tasks: Vec<(&Self, usize, &mut [f32])> = ws
            .iter()
            .zip(outs.iter_mut())
            .flat_map(|(&w, out)| {
                out.chunks_mut(rows_per_task * tokens)
                    .enumerate()
                    .map(move |(task, out)| (w, task * rows_per_task, out))
            })
            .collect();
        let kernel = Kernel::detect();
        let vnni = match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni(_) if ws.iter().any(|w| matches!(w.blocks, Blocks::Q8_0 { .. })) => {
                VnniInput::new(&xq, &xd, cols)
            }
            _ => VnniInput::default(),
        };
        tasks.into_par_iter().for_each(|(w, first, out)| {
            let n = out.len() / tokens;
            let block_range = first * blocks..(first + n) * blocks;
            match &w.blocks {
                Blocks::Q8_0 { qs, scales } => kernel.run(RowsKernel {
                    wq: &qs[first * cols..(first + n) * cols],
                    wd: &scales[block_range],
                    xq: &xq,
                    xd: &xd,
                    vnni: &vnni,
                    cols,
                    tokens,
                    out,
                }),
                Blocks::Q8_0x16 { qs, scales } => kernel.run_x16(X16Kernel {
                    wq: &qs[first * cols..(first + n) * cols],
                    ahead: &qs[first * cols..],
                    wd: &scales[block_range],
                    x: &x16,
                    cols,
                    tokens,
                    out,
                }),
                Blocks::Q4_1 { qs, scales, mins } => kernel.run_q4_1(Q4RowsKernel {
                    wq: &qs[first * cols / 2..(first + n) * cols / 2],
                    wd: &scales[block_range.clone()],
                    wm: &mins[block_range],
                    xq: &xq,
                    xd: &xd,
                    xs: &xs,
                    cols,
                    tokens,
                    out,
                }),
            }
        });
        (outs, rows_per_task)
    }
}

/// Quantizes 32 values to Q4_1 as GGML's `quantize_row_q4_1_ref` does (`q = min(15,
/// ⌊(w − m)/d + ½⌋)`), writing 16 bytes of nibbles into `q`; returns `(d, m)`.
fn quantize_block_q4_1(w: &[f32], q: &mut [u8]) -> (f32, f32) {
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in w {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / 15.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let level = |v: f32| (((v - min) * inv + 0.5) as u8).min(15);
    let (low, high) = w.split_at(Q8_BLOCK / 2);
    for ((q, &l), &h) in q.iter_mut().zip(low).zip(high) {
        *q = level(l) | (level(h) << 4);
    }
    (d, min)
}

/// Rows per group of the interleaved Q8_0 layout ([`QMatrix::interleaved`]).
pub const GROUP: usize = 16;

/// Bytes of one group's block in [`Blocks::Q8_0x16`]: 16 rows × 32 values.
const GROUP_BLOCK_BYTES: usize = GROUP * Q8_BLOCK;

/// Where value `k` (`< 32`) of row `i` (`< 16`) lies inside a group's block of
/// [`Blocks::Q8_0x16`]: chunk `k / 4` of 64 bytes, 4 bytes per row.
fn x16_offset(i: usize, k: usize) -> usize {
    (k / 4) * 64 + i * 4 + k % 4
}

/// Whether this CPU holds Q8_0 matrices interleaved (it has AVX-512 VNNI), so that every
/// input to a matrix of a multiple of [`GROUP`] rows, a prompt's included, runs in 8 bits.
pub fn interleaves_q8_0() -> bool {
    Kernel::detect().has_vnni()
}

/// Row-major Q8_0 values and scales (`[rows, cols]`, one scale per block) in the layout of
/// [`Blocks::Q8_0x16`].
fn interleave_groups(qs: &[i8], scales: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let blocks = cols / Q8_BLOCK;
    let mut out = vec![0u8; qs.len()];
    let mut out_scales = vec![0f32; scales.len()];
    for (r, (row, row_scales)) in qs
        .chunks_exact(cols)
        .zip(scales.chunks_exact(blocks))
        .enumerate()
    {
        let (g, i) = (r / GROUP, r % GROUP);
        for (b, (block, &d)) in row.chunks_exact(Q8_BLOCK).zip(row_scales).enumerate() {
            let gb = g * blocks + b;
            out_scales[gb * GROUP + i] = d;
            for (k, &q) in block.iter().enumerate() {
                out[gb * GROUP_BLOCK_BYTES + x16_offset(i, k)] = q.cast_unsigned() ^ 0x80;
            }
        }
    }
    debug_assert_eq!(rows * blocks, scales.len());
    (out, out_scales)
}

/// Quantizes `values` block by block into `q` (as [`quantize_block`]) and returns the blocks'
/// scales, compiled for the CPU's SIMD level: there `f32::round` is a few vector
/// instructions, at the baseline level (SSE2) a call to libm's `roundf` per value, which was
/// 3 % of Q8_0 decoding and 6 % of loading a model into Q8_0 (perf, 2026-12-03). The rounding
/// is the same (half away from zero), so the values are identical.
fn quantize_blocks(values: &[f32], q: &mut [i8]) -> Vec<f32> {
    let mut scales = vec![0f32; values.len() / Q8_BLOCK];
    #[cfg(target_arch = "x86_64")]
    if let Some(token) = <archmage::X64V4xToken as archmage::SimdToken>::summon() {
        x16_vnni::quantize_blocks(token, values, q, &mut scales);
        return scales;
    }
    pulp::Arch::new().dispatch(QuantizeBlocks {
        values,
        q,
        scales: &mut scales,
    });
    scales
}

/// [`quantize_blocks`]'s loop as a `pulp` kernel: a closure or an iterator chain would be
/// compiled on its own at the baseline level, `roundf` calls included (seen in perf).
struct QuantizeBlocks<'a> {
    values: &'a [f32],
    q: &'a mut [i8],
    scales: &'a mut [f32],
}

impl pulp::WithSimd for QuantizeBlocks<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let QuantizeBlocks { values, q, scales } = self;
        for (b, d) in scales.iter_mut().enumerate() {
            let range = b * Q8_BLOCK..(b + 1) * Q8_BLOCK;
            *d = quantize_block(&values[range.clone()], &mut q[range]);
        }
    }
}

/// Quantizes 32 values into `q` and returns their scale.
#[inline(always)]
fn quantize_block(w: &[f32], q: &mut [i8]) -> f32 {
    let mut amax = 0f32;
    for &v in w {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(w) {
        *q = (v * inv).round() as i8;
    }
    d
}

/// Which dot-product code runs: hand-written AVX-512 (x86-64-v4) or AVX2 (x86-64-v3) where the
/// CPU has it, otherwise the portable loop compiled for the best SIMD level `pulp` finds.
#[derive(Clone, Copy)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni(archmage::X64V4xToken),
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Portable(pulp::Arch),
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(token) = <archmage::X64V4xToken as archmage::SimdToken>::summon() {
            return Self::Vnni(token);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            return Self::Avx512(simd);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Self::Avx2(simd);
        }
        Self::Portable(pulp::Arch::new())
    }

    /// Whether this is the VNNI kernel, the one [`Blocks::Q8_0x16`] is laid out for.
    fn has_vnni(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni(_) => true,
            _ => false,
        }
    }

    /// The kernel's name in test messages.
    #[cfg(test)]
    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni(_) => "vnni",
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(_) => "avx2",
            Self::Portable(_) => "portable",
        }
    }

    /// Every kernel this CPU can run, best first and the portable one last (the tests compare
    /// them).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            kernels
                .extend(<archmage::X64V4xToken as archmage::SimdToken>::summon().map(Self::Vnni));
            kernels.extend(pulp::x86::V4::try_new().map(Self::Avx512));
            kernels.extend(pulp::x86::V3::try_new().map(Self::Avx2));
        }
        kernels.push(Self::Portable(pulp::Arch::new()));
        kernels
    }

    fn run(self, rows: RowsKernel<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni(token) => vnni::rows(token, rows),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(simd) => pulp::Simd::vectorize(simd, avx512::Rows { simd, rows }),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(simd) => pulp::Simd::vectorize(simd, avx2::Rows { simd, rows }),
            Self::Portable(arch) => arch.dispatch(rows),
        }
    }

    /// [`Kernel::run`] for interleaved Q8_0 weights: the VNNI kernel where the CPU has it, the
    /// portable one (the same result, bit for bit) otherwise.
    fn run_x16(self, groups: X16Kernel<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni(token) => x16_vnni::groups(token, groups),
            _ => groups.portable(),
        }
    }

    /// [`Kernel::run`] for Q4_1 weights; the AVX-512 machines run the AVX2 code (the 4-bit
    /// kernel is bound by the weights' bytes, not by the vector width).
    fn run_q4_1(self, rows: Q4RowsKernel<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni(_) => {
                let simd = pulp::x86::V3::try_new().expect("a VNNI CPU has AVX2");
                pulp::Simd::vectorize(simd, avx2::Rows4 { simd, rows })
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(simd) => pulp::Simd::vectorize(*simd, avx2::Rows4 { simd: *simd, rows }),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(simd) => pulp::Simd::vectorize(simd, avx2::Rows4 { simd, rows }),
            Self::Portable(arch) => arch.dispatch(rows),
        }
    }
}

/// The activations as the VNNI kernel reads them, prepared once per product for every task:
/// the values offset to unsigned bytes (`q ⊕ 0x80` = `q + 128`), and each pair of blocks' two
/// scales spread over 8 lanes each (16 per pair), per token.
#[derive(Default)]
struct VnniInput {
    xu: Vec<u8>,
    xs: Vec<f32>,
}

impl VnniInput {
    fn new(xq: &[i8], xd: &[f32], cols: usize) -> Self {
        let blocks = cols / Q8_BLOCK;
        let pairs = blocks / 2;
        let xu = xq.iter().map(|&v| v.cast_unsigned() ^ 0x80).collect();
        let mut xs = vec![0f32; xd.len() / blocks.max(1) * pairs * 16];
        if pairs == 0 {
            return Self { xu, xs };
        }
        for (d, lanes) in xd.chunks_exact(blocks).zip(xs.chunks_exact_mut(pairs * 16)) {
            for (d, lanes) in d.chunks_exact(2).zip(lanes.chunks_exact_mut(16)) {
                lanes[..8].fill(d[0]);
                lanes[8..].fill(d[1]);
            }
        }
        Self { xu, xs }
    }
}

/// The activations as the interleaved kernels read them, prepared once per product, block
/// by block (all tokens' data of block `b` together, so a pass over some tokens reads one
/// place per block): each token's Q8_0 values as little-endian 4-byte words (one `vpdpbusd`
/// broadcast each; `words[(b·tokens + t)·8 + c]`), `−128·Σq` (which takes off what the
/// weights' offset of 128 added) and the scale (`[b·tokens + t]` both).
#[derive(Default)]
struct X16Input {
    words: Vec<i32>,
    corrections: Vec<i32>,
    scales: Vec<f32>,
}

impl X16Input {
    fn new(xq: &[i8], xd: &[f32], cols: usize, tokens: usize) -> Self {
        let blocks = cols / Q8_BLOCK;
        let mut input = Self {
            words: vec![0; tokens * cols / 4],
            corrections: vec![0; tokens * blocks],
            scales: vec![0.0; tokens * blocks],
        };
        for (t, (xq, xd)) in xq
            .chunks_exact(cols)
            .zip(xd.chunks_exact(blocks))
            .enumerate()
        {
            for (b, (block, &d)) in xq.chunks_exact(Q8_BLOCK).zip(xd).enumerate() {
                let at = b * tokens + t;
                for (word, v) in input.words[at * 8..(at + 1) * 8]
                    .iter_mut()
                    .zip(block.chunks_exact(4))
                {
                    *word = i32::from_le_bytes([v[0], v[1], v[2], v[3]].map(i8::cast_unsigned));
                }
                input.corrections[at] = -128 * block.iter().map(|&v| i32::from(v)).sum::<i32>();
                input.scales[at] = d;
            }
        }
        input
    }
}

/// Some groups of interleaved weight rows ([`Blocks::Q8_0x16`]) against every token.
struct X16Kernel<'a> {
    /// The groups' blocks, `rows of this task × cols` bytes.
    wq: &'a [u8],
    /// The matrix's blocks from this task's first on (`wq` and the tasks after it), which
    /// the AVX-512 kernel prefetches ahead of its reads.
    ahead: &'a [u8],
    /// `16` scales per group and block.
    wd: &'a [f32],
    x: &'a X16Input,
    cols: usize,
    tokens: usize,
    /// `[tokens, rows of this task]` (token-major: a token's 16 results of a group are
    /// contiguous, one vector store, and the product needs no transposing afterwards).
    out: &'a mut [f32],
}

impl X16Kernel<'_> {
    /// The definition the VNNI kernel follows, in scalar code: per group, token and block,
    /// the 16 rows' exact integer sums (offset weights times values, plus the correction),
    /// then `acc = sum·(d_w·d_x) + acc` in one rounding (a fused multiply-add), block after
    /// block.
    fn portable(self) {
        let (blocks, tokens, x) = (self.cols / Q8_BLOCK, self.tokens, self.x);
        let group_bytes = blocks * GROUP_BLOCK_BYTES;
        let n = self.out.len() / tokens;
        for g in 0..n / GROUP {
            let w = &self.wq[g * group_bytes..(g + 1) * group_bytes];
            let d = &self.wd[g * blocks * GROUP..(g + 1) * blocks * GROUP];
            for t in 0..tokens {
                let mut acc = [0f32; GROUP];
                for (b, (w, d)) in w
                    .chunks_exact(GROUP_BLOCK_BYTES)
                    .zip(d.chunks_exact(GROUP))
                    .enumerate()
                {
                    let at = b * tokens + t;
                    let mut sums = [x.corrections[at]; GROUP];
                    for (chunk, word) in w.chunks_exact(64).zip(&x.words[at * 8..(at + 1) * 8]) {
                        let x = word.to_le_bytes();
                        for (sum, w) in sums.iter_mut().zip(chunk.chunks_exact(4)) {
                            for (&w, &x) in w.iter().zip(&x) {
                                *sum += i32::from(w) * i32::from(x.cast_signed());
                            }
                        }
                    }
                    let dx = x.scales[at];
                    for ((acc, &sum), &dw) in acc.iter_mut().zip(&sums).zip(d) {
                        *acc = (sum as f32).mul_add(dw * dx, *acc);
                    }
                }
                self.out[t * n + g * GROUP..][..GROUP].copy_from_slice(&acc);
            }
        }
    }
}

/// Some weight rows against every token, compiled once per SIMD level by `pulp`.
struct RowsKernel<'a> {
    wq: &'a [i8],
    wd: &'a [f32],
    xq: &'a [i8],
    xd: &'a [f32],
    /// What the VNNI kernel reads instead of `xq` and `xd` ([`VnniInput`]); empty otherwise.
    vnni: &'a VnniInput,
    cols: usize,
    tokens: usize,
    /// `[rows of this task, tokens]`.
    out: &'a mut [f32],
}

impl RowsKernel<'_> {
    /// Fills `out[r, t]` with `dot(row r's weights and scales, token t's values and scales)`:
    /// the loop both kernels share, inlined into each one's SIMD context.
    #[inline(always)]
    fn each_dot(self, dot: impl Fn(&[i8], &[f32], &[i8], &[f32]) -> f32) {
        let blocks = self.cols / Q8_BLOCK;
        for (r, out) in self.out.chunks_exact_mut(self.tokens).enumerate() {
            let wq = &self.wq[r * self.cols..(r + 1) * self.cols];
            let wd = &self.wd[r * blocks..(r + 1) * blocks];
            for (t, y) in out.iter_mut().enumerate() {
                let xq = &self.xq[t * self.cols..(t + 1) * self.cols];
                let xd = &self.xd[t * blocks..(t + 1) * blocks];
                *y = dot(wq, wd, xq, xd);
            }
        }
    }
}

impl pulp::WithSimd for RowsKernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        self.each_dot(dot_q8)
    }
}

/// Some Q4_1 weight rows against every token ([`RowsKernel`] for 4-bit weights).
struct Q4RowsKernel<'a> {
    /// 16 bytes per block (GGML's nibble order).
    wq: &'a [u8],
    wd: &'a [f32],
    wm: &'a [f32],
    xq: &'a [i8],
    xd: &'a [f32],
    /// `d_x · Σ q_x` per block of every token.
    xs: &'a [f32],
    cols: usize,
    tokens: usize,
    /// `[rows of this task, tokens]`.
    out: &'a mut [f32],
}

/// One Q4_1 row's blocks: nibbles, scales, minimums.
type Q4Row<'a> = (&'a [u8], &'a [f32], &'a [f32]);
/// One token's Q8_0 blocks: values, scales, `d·Σq` per block.
type Q8Token<'a> = (&'a [i8], &'a [f32], &'a [f32]);

impl Q4RowsKernel<'_> {
    /// [`RowsKernel::each_dot`] for 4-bit rows.
    #[inline(always)]
    fn each_dot(self, dot: impl Fn(Q4Row<'_>, Q8Token<'_>) -> f32) {
        let blocks = self.cols / Q8_BLOCK;
        for (r, out) in self.out.chunks_exact_mut(self.tokens).enumerate() {
            let b = r * blocks..(r + 1) * blocks;
            let w = (
                &self.wq[r * self.cols / 2..(r + 1) * self.cols / 2],
                &self.wd[b.clone()],
                &self.wm[b],
            );
            for (t, y) in out.iter_mut().enumerate() {
                let b = t * blocks..(t + 1) * blocks;
                let x = (
                    &self.xq[t * self.cols..(t + 1) * self.cols],
                    &self.xd[b.clone()],
                    &self.xs[b],
                );
                *y = dot(w, x);
            }
        }
    }
}

impl pulp::WithSimd for Q4RowsKernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        self.each_dot(dot_q4_1)
    }
}

/// `Σ_b (d_w[b]·d_x[b]·Σ_k q_w[b,k]·q_x[b,k] + m_w[b]·d_x[b]·Σ_k q_x[b,k])`, which is
/// `Σ (d_w·q_w + m_w)·(d_x·q_x)` with exact integer sums per block.
#[inline(always)]
fn dot_q4_1((wq, wd, wm): Q4Row<'_>, (xq, xd, xs): Q8Token<'_>) -> f32 {
    let mut acc = 0f32;
    for ((w, x), ((dw, mw), (dx, sx))) in wq
        .chunks_exact(Q8_BLOCK / 2)
        .zip(xq.chunks_exact(Q8_BLOCK))
        .zip(wd.iter().zip(wm).zip(xd.iter().zip(xs)))
    {
        let mut s = 0i32;
        for j in 0..Q8_BLOCK / 2 {
            s += i32::from(w[j] & 0x0F) * i32::from(x[j])
                + i32::from(w[j] >> 4) * i32::from(x[j + Q8_BLOCK / 2]);
        }
        acc += s as f32 * (dw * dx) + mw * sx;
    }
    acc
}

/// `Σ_b d_w[b]·d_x[b]·Σ_k q_w[b,k]·q_x[b,k]`: exact integer sums per block (a reduction
/// LLVM turns into `vpmaddwd` under AVX2).
#[inline(always)]
fn dot_q8(wq: &[i8], wd: &[f32], xq: &[i8], xd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((w, x), (dw, dx)) in wq
        .chunks_exact(Q8_BLOCK)
        .zip(xq.chunks_exact(Q8_BLOCK))
        .zip(wd.iter().zip(xd))
    {
        let mut s = 0i32;
        for k in 0..Q8_BLOCK {
            s += i32::from(w[k]) * i32::from(x[k]);
        }
        acc += s as f32 * (dw * dx);
    }
    acc
}

/// The AVX2 kernel, after llama.cpp's `ggml_vec_dot_q8_0_q8_0`: per block of 32, one
/// `vpmaddubsw` (|x| as unsigned times w with x's sign) gives 16 pair sums, one `vpmaddwd` turns
/// them into 8 i32 lanes, which are scaled by `d_w·d_x` and accumulated in 8 f32 lanes; the lanes
/// are summed once per row. The sums are exact (|q| ≤ 127, so a pair is at most 32,258 and never
/// saturates i16), so only the f32 accumulation order differs from the portable loop.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{__m128i, __m256, __m256i};

    use super::{Q8_BLOCK, RowsKernel};

    pub(super) struct Rows<'a> {
        pub simd: pulp::x86::V3,
        pub rows: RowsKernel<'a>,
    }

    impl pulp::WithSimd for Rows<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
            let Rows { simd, rows } = self;
            rows.each_dot(|wq, wd, xq, xd| dot(simd, wq, wd, xq, xd))
        }
    }

    /// Q4_1 rows on AVX2, after llama.cpp's `ggml_vec_dot_q4_1_q8_1`: a block's 16 bytes are
    /// split into their low nibbles (values 0–15) and high nibbles (16–31) in one 256-bit
    /// register, `vpmaddubsw` multiplies them (unsigned, at most 15) with x's signed values,
    /// `vpmaddwd` gives 8 i32 lanes scaled by `d_w·d_x`; the minimum's term `m_w·d_x·Σq_x`
    /// is added per block. The integer sums are exact (a pair is at most 2·15·127).
    pub(super) struct Rows4<'a> {
        pub simd: pulp::x86::V3,
        pub rows: super::Q4RowsKernel<'a>,
    }

    impl pulp::WithSimd for Rows4<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
            let Rows4 { simd, rows } = self;
            rows.each_dot(|w, x| dot_q4_1(simd, w, x))
        }
    }

    #[inline(always)]
    fn dot_q4_1(
        simd: pulp::x86::V3,
        (wq, wd, wm): super::Q4Row<'_>,
        (xq, xd, xs): super::Q8Token<'_>,
    ) -> f32 {
        let ones = simd.avx._mm256_set1_epi16(1);
        let nibble = simd.sse2._mm_set1_epi8(0x0F);
        let mut acc: __m256 = simd.avx._mm256_setzero_ps();
        let mut acc_min = 0f32;
        for ((w, x), ((&dw, &mw), (&dx, &sx))) in wq
            .chunks_exact(Q8_BLOCK / 2)
            .zip(xq.chunks_exact(Q8_BLOCK))
            .zip(wd.iter().zip(wm).zip(xd.iter().zip(xs)))
        {
            let bytes: [u8; Q8_BLOCK / 2] = w.try_into().expect("a Q4_1 block is 16 bytes");
            let bytes: __m128i = pulp::cast(bytes);
            let low = simd.sse2._mm_and_si128(bytes, nibble);
            let high = simd
                .sse2
                ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(bytes), nibble);
            let w = simd.avx._mm256_set_m128i(high, low);
            let pairs = simd.avx2._mm256_maddubs_epi16(w, load(x));
            let lanes = simd.avx2._mm256_madd_epi16(pairs, ones);
            let lanes = simd.avx._mm256_cvtepi32_ps(lanes);
            acc = simd
                .fma
                ._mm256_fmadd_ps(lanes, simd.avx._mm256_set1_ps(dw * dx), acc);
            acc_min += mw * sx;
        }
        let lanes: [f32; 8] = pulp::cast(acc);
        lanes.iter().sum::<f32>() + acc_min
    }

    #[inline(always)]
    fn load(block: &[i8]) -> __m256i {
        let bytes: [i8; Q8_BLOCK] = block.try_into().expect("a Q8_0 block is 32 values");
        pulp::cast(bytes)
    }

    #[inline(always)]
    pub(super) fn dot(simd: pulp::x86::V3, wq: &[i8], wd: &[f32], xq: &[i8], xd: &[f32]) -> f32 {
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc: __m256 = simd.avx._mm256_setzero_ps();
        for ((w, x), (&dw, &dx)) in wq
            .chunks_exact(Q8_BLOCK)
            .zip(xq.chunks_exact(Q8_BLOCK))
            .zip(wd.iter().zip(xd))
        {
            let (w, x) = (load(w), load(x));
            let abs_x = simd.avx2._mm256_abs_epi8(x);
            let w_signed = simd.avx2._mm256_sign_epi8(w, x);
            let pairs = simd.avx2._mm256_maddubs_epi16(abs_x, w_signed);
            let lanes = simd.avx2._mm256_madd_epi16(pairs, ones);
            let lanes = simd.avx._mm256_cvtepi32_ps(lanes);
            acc = simd
                .fma
                ._mm256_fmadd_ps(lanes, simd.avx._mm256_set1_ps(dw * dx), acc);
        }
        let lanes: [f32; 8] = pulp::cast(acc);
        lanes.iter().sum()
    }
}

/// The AVX-512 VNNI kernel (x86-64-v4 with VNNI: Ice Lake, Zen 4 and later): one `vpdpbusd`
/// multiplies 64 unsigned bytes with 64 signed ones and adds each group of 4 products into one of
/// 16 i32 lanes. It needs one unsigned operand, so x is offset by 128 (`x ⊕ 0x80` as a byte,
/// prepared once per product for every task: `VnniInput`) and the offset's share `128·Σw` is taken off by
/// starting the sum at `−128·Σw`, itself one `vpdpbusd` of the weights with bytes of 128, computed
/// once per row and block pair and shared by every token. Per token and pair of blocks that
/// leaves a load, a `vpdpbusd`, a conversion and the scaling `fma`, where the AVX-512 kernel
/// takes x's sign onto w and sums in two steps; the scale vectors (`d_x` of each block over its 8
/// lanes) are prepared with the offset values, and up to 8 tokens share each load of a weight
/// pair.
///
/// The lanes hold the same exact integer sums as the AVX-512 kernel's (4 consecutive products
/// each), scaled and accumulated in the same order, so both kernels give the same bits; an odd
/// last block is added by the portable loop.
#[cfg(target_arch = "x86_64")]
mod vnni {
    use archmage::prelude::*;

    use super::{Q8_BLOCK, RowsKernel};

    const PAIR: usize = 2 * Q8_BLOCK;

    /// Rows against every token: the tokens go through [`row`] in groups of up to 8 (4 and 2
    /// and 1 for the rest), whose accumulators stay in registers while each weight pair is read.
    #[arcane(import_intrinsics)]
    pub(super) fn rows(token: X64V4xToken, k: RowsKernel<'_>) {
        let RowsKernel {
            wq,
            wd,
            xq,
            xd,
            vnni,
            cols,
            tokens,
            out,
        } = k;
        let blocks = cols / Q8_BLOCK;
        let pairs = blocks / 2;
        let (xu, xs) = (&vnni.xu, &vnni.xs);
        let x_of = |t: usize| {
            (
                &xu[t * cols..(t + 1) * cols],
                &xs[t * pairs * 16..(t + 1) * pairs * 16],
            )
        };
        for (r, out) in out.chunks_exact_mut(tokens).enumerate() {
            let w_row = &wq[r * cols..(r + 1) * cols];
            let d_row = &wd[r * blocks..(r + 1) * blocks];
            let mut first = 0;
            while first < tokens {
                let left = tokens - first;
                let n = if left >= 8 {
                    8
                } else if left >= 4 {
                    4
                } else if left >= 2 {
                    2
                } else {
                    1
                };
                let sums = &mut out[first..first + n];
                match n {
                    8 => sums.copy_from_slice(&row::<8>(
                        token,
                        w_row,
                        d_row,
                        std::array::from_fn(|j| x_of(first + j)),
                    )),
                    4 => sums.copy_from_slice(&row::<4>(
                        token,
                        w_row,
                        d_row,
                        std::array::from_fn(|j| x_of(first + j)),
                    )),
                    2 => sums.copy_from_slice(&row::<2>(
                        token,
                        w_row,
                        d_row,
                        std::array::from_fn(|j| x_of(first + j)),
                    )),
                    _ => sums.copy_from_slice(&row::<1>(token, w_row, d_row, [x_of(first)])),
                }
                if blocks % 2 == 1 {
                    let (b, k) = (2 * pairs, 2 * pairs * Q8_BLOCK);
                    for (j, sum) in sums.iter_mut().enumerate() {
                        let t = first + j;
                        *sum += super::dot_q8(
                            &w_row[k..],
                            &d_row[b..],
                            &xq[t * cols + k..(t + 1) * cols],
                            &xd[t * blocks + b..(t + 1) * blocks],
                        );
                    }
                }
                first += n;
            }
        }
    }

    /// One row's pairs of blocks against `N` tokens (x offset to bytes, scales per pair),
    /// returning each token's sum.
    #[rite(import_intrinsics)]
    fn row<const N: usize>(
        _token: X64V4xToken,
        w_row: &[i8],
        d_row: &[f32],
        x: [(&[u8], &[f32]); N],
    ) -> [f32; N] {
        let zero = _mm512_setzero_si512();
        let bias = _mm512_set1_epi8(i8::MIN); // bytes of 0x80 = 128 unsigned
        let mut acc = [_mm512_setzero_ps(); N];
        let mut xu = x.map(|(u, _)| u.chunks_exact(PAIR));
        let mut xs = x.map(|(_, s)| s.chunks_exact(16));
        for (w, d) in w_row.chunks_exact(PAIR).zip(d_row.chunks_exact(2)) {
            let w: &[i8; PAIR] = w.try_into().expect("a pair of blocks");
            let w = _mm512_loadu_si512(w);
            let start = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, w));
            let dw = _mm512_insertf32x8::<1>(_mm512_set1_ps(d[0]), _mm256_set1_ps(d[1]));
            for j in 0..N {
                let u: &[u8; PAIR] = xu[j]
                    .next()
                    .expect("x is as wide")
                    .try_into()
                    .expect("a pair");
                let s: &[f32; 16] = xs[j].next().expect("a scale pair").try_into().expect("16");
                let lanes = _mm512_dpbusd_epi32(start, _mm512_loadu_si512(u), w);
                let scale = _mm512_mul_ps(dw, _mm512_loadu_ps(s));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), scale, acc[j]);
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(a))
    }
}

/// The kernel of [`Blocks::Q8_0x16`] on AVX-512 VNNI: per group of 16 rows and block, the 8
/// chunks of weights stay in registers while up to 8 tokens read them; per token, 8
/// `vpdpbusd` (the weights as unsigned bytes, the token's 4 values broadcast) from the
/// correction give the 16 rows' exact block sums in 16 lanes, one conversion and one
/// multiply-add scale them into the token's 16 results. The arithmetic is
/// [`X16Kernel::portable`]'s, so the results are equal bit for bit.
#[cfg(target_arch = "x86_64")]
mod x16_vnni {
    use archmage::prelude::*;

    use super::{GROUP, GROUP_BLOCK_BYTES as BLOCK_BYTES, Q8_BLOCK, X16Kernel};

    /// Runs `$body` for `$j` = 0, 1, … below `$n` (at most 8), each with a constant `$j`, so
    /// arrays indexed by it stay in registers.
    macro_rules! each_token {
        ($n:expr, |$j:ident| $body:block) => {
            each_token!(@ $n, $j, $body, 0 1 2 3 4 5 6 7)
        };
        (@ $n:expr, $j:ident, $body:block, $($k:literal)+) => {
            $(if $k < $n {
                let $j: usize = $k;
                $body
            })+
        };
    }

    #[arcane(import_intrinsics)]
    pub(super) fn groups(token: X64V4xToken, k: X16Kernel<'_>) {
        let X16Kernel {
            wq,
            ahead,
            wd,
            x,
            cols,
            tokens,
            out,
        } = k;
        let blocks = cols / Q8_BLOCK;
        let n = out.len() / tokens;
        for g in 0..n / GROUP {
            let w = &wq[g * blocks * BLOCK_BYTES..(g + 1) * blocks * BLOCK_BYTES];
            let d = &wd[g * blocks * GROUP..(g + 1) * blocks * GROUP];
            let mut first = 0;
            while first < tokens {
                let pass = Pass {
                    w,
                    ahead: if first == 0 {
                        &ahead[g * blocks * BLOCK_BYTES..]
                    } else {
                        &[]
                    },
                    d,
                    x,
                    first,
                    tokens,
                };
                let count = (tokens - first).min(8);
                // each token's 16 results to its row of `out` ([tokens, rows of the task])
                let at = first * n + g * GROUP;
                match count {
                    8 => store(group::<8>(token, pass), &mut out[at..], n),
                    7 => store(group::<7>(token, pass), &mut out[at..], n),
                    6 => store(group::<6>(token, pass), &mut out[at..], n),
                    5 => store(group::<5>(token, pass), &mut out[at..], n),
                    4 => store(group::<4>(token, pass), &mut out[at..], n),
                    3 => store(group::<3>(token, pass), &mut out[at..], n),
                    2 => store(group::<2>(token, pass), &mut out[at..], n),
                    _ => store(group::<1>(token, pass), &mut out[at..], n),
                }
                first += count;
            }
        }
    }

    /// [`super::quantize_blocks`] on AVX-512, the same values bit for bit: `amax` is a maximum
    /// (any order gives the same), `q = round(v · (1/d))` rounds half away from zero as
    /// `f32::round` does (truncate, then step away from zero where the dropped part is ≥ ½,
    /// which is exact below 2²³), saturated to `i8` as `as i8` is. The portable loop's maximum
    /// and rounding did not vectorize: 5 % of a 6-sequence SmolLM2 decode step (perf).
    #[arcane(import_intrinsics)]
    pub(super) fn quantize_blocks(
        _token: X64V4xToken,
        values: &[f32],
        q: &mut [i8],
        scales: &mut [f32],
    ) {
        let half = _mm512_set1_ps(0.5);
        let one = _mm512_set1_ps(1.0);
        for ((v, q), d) in values
            .chunks_exact(Q8_BLOCK)
            .zip(q.chunks_exact_mut(Q8_BLOCK))
            .zip(scales.iter_mut())
        {
            let lo = _mm512_loadu_ps(<&[f32; 16]>::try_from(&v[..16]).expect("16 values"));
            let hi = _mm512_loadu_ps(<&[f32; 16]>::try_from(&v[16..]).expect("16 values"));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            *d = amax / 127.0;
            let inv = _mm512_set1_ps(if *d > 0.0 { 1.0 / *d } else { 0.0 });
            for (half_values, q) in [lo, hi].into_iter().zip(q.chunks_exact_mut(16)) {
                let y = _mm512_mul_ps(half_values, inv);
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let away =
                    _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(y, t)), half);
                // ±1 with y's sign where the dropped part is at least ½
                let step = _mm512_or_ps(
                    one,
                    _mm512_and_ps(y, _mm512_castsi512_ps(_mm512_set1_epi32(i32::MIN))),
                );
                let r = _mm512_mask_add_ps(t, away, t, step);
                let bytes = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r));
                let q: &mut [i8; 16] = q.try_into().expect("16 values");
                _mm_storeu_si128(q, bytes);
            }
        }
    }

    /// Token `j`'s 16 results to `out[j · stride..][..16]`.
    #[inline(always)]
    fn store<const N: usize>(sums: [[f32; GROUP]; N], out: &mut [f32], stride: usize) {
        for (j, sums) in sums.iter().enumerate() {
            out[j * stride..][..GROUP].copy_from_slice(sums);
        }
    }

    /// One group's blocks (`w`, scales `d`) against tokens `first..first + N` of `x`.
    #[derive(Clone, Copy)]
    struct Pass<'a> {
        w: &'a [u8],
        /// The matrix's weights from this group's on, asked for
        /// [`PREFETCH_BYTES`](crate::ops::simd::PREFETCH_BYTES) (8 blocks) before they are
        /// read (empty: none, a later pass over weights the first brought in).
        ahead: &'a [u8],
        d: &'a [f32],
        x: &'a super::X16Input,
        first: usize,
        tokens: usize,
    }

    /// Each token's 16 results of one [`Pass`].
    #[rite(import_intrinsics)]
    fn group<const N: usize>(_token: X64V4xToken, pass: Pass<'_>) -> [[f32; GROUP]; N] {
        let Pass {
            w,
            ahead,
            d,
            x,
            first,
            tokens,
        } = pass;
        let mut acc = [_mm512_setzero_ps(); N];
        for (b, (w, d)) in w
            .chunks_exact(BLOCK_BYTES)
            .zip(d.chunks_exact(GROUP))
            .enumerate()
        {
            crate::ops::simd::prefetch_ahead(ahead, b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES);
            // (loops, not closures: a closure would be compiled without AVX-512)
            let mut wc = [_mm512_setzero_si512(); 8];
            for (wc, chunk) in wc.iter_mut().zip(w.chunks_exact(64)) {
                *wc = _mm512_loadu_si512(<&[u8; 64]>::try_from(chunk).expect("64 bytes"));
            }
            let dw = _mm512_loadu_ps(d.try_into().expect("16 scales"));
            let at = b * tokens + first;
            let words = &x.words[at * 8..(at + N) * 8];
            let corrections = &x.corrections[at..at + N];
            let scales = &x.scales[at..at + N];
            each_token!(N, |j| {
                // two chains of 4 (one token alone would wait on one chain of 8)
                let mut low = _mm512_set1_epi32(corrections[j]);
                let mut high = _mm512_setzero_si512();
                for c in 0..4 {
                    low = _mm512_dpbusd_epi32(low, wc[c], _mm512_set1_epi32(words[j * 8 + c]));
                    high = _mm512_dpbusd_epi32(
                        high,
                        wc[c + 4],
                        _mm512_set1_epi32(words[j * 8 + c + 4]),
                    );
                }
                let sums = _mm512_add_epi32(low, high);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(scales[j]));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[j]);
            });
        }
        let mut out = [[0f32; GROUP]; N];
        for (out, acc) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(out, acc);
        }
        out
    }
}

/// The AVX-512 kernel: the AVX2 kernel's arithmetic on 512-bit registers, two blocks per
/// step. AVX-512 has no `vpsignb`, so w takes x's sign with a masked `0 - w` on x's sign bits;
/// lanes 0–7 of the `vpmaddwd` result belong to the first block and 8–15 to the second, so the
/// scale vector holds `d_w·d_x` of each block in its half. An odd last block goes through the
/// AVX2 code. The sums per block are exact as in AVX2; only the f32 accumulation order differs.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{__m256, __m512, __m512i};

    use super::{Q8_BLOCK, RowsKernel};

    pub(super) struct Rows<'a> {
        pub simd: pulp::x86::V4,
        pub rows: RowsKernel<'a>,
    }

    impl pulp::WithSimd for Rows<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
            let Rows { simd, rows } = self;
            rows.each_dot(|wq, wd, xq, xd| dot(simd, wq, wd, xq, xd))
        }
    }

    #[inline(always)]
    fn load(blocks: &[i8]) -> __m512i {
        let bytes: [i8; 2 * Q8_BLOCK] = blocks.try_into().expect("two Q8_0 blocks are 64 values");
        pulp::cast(bytes)
    }

    #[inline(always)]
    fn dot(simd: pulp::x86::V4, wq: &[i8], wd: &[f32], xq: &[i8], xd: &[f32]) -> f32 {
        let (f, bw) = (simd.avx512f, simd.avx512bw);
        let ones = f._mm512_set1_epi16(1);
        let zero = f._mm512_setzero_si512();
        let mut acc: __m512 = f._mm512_setzero_ps();
        let pairs = wd.len() / 2;
        for ((w, x), (dw, dx)) in wq
            .chunks_exact(2 * Q8_BLOCK)
            .zip(xq.chunks_exact(2 * Q8_BLOCK))
            .zip(wd.chunks_exact(2).zip(xd.chunks_exact(2)))
        {
            let (w, x) = (load(w), load(x));
            let abs_x = bw._mm512_abs_epi8(x);
            let w_signed = bw._mm512_mask_sub_epi8(w, bw._mm512_movepi8_mask(x), zero, w);
            let lanes = bw._mm512_madd_epi16(bw._mm512_maddubs_epi16(abs_x, w_signed), ones);
            let high: __m256 = simd.avx._mm256_set1_ps(dw[1] * dx[1]);
            let scale = simd
                .avx512dq
                ._mm512_insertf32x8::<1>(f._mm512_set1_ps(dw[0] * dx[0]), high);
            acc = f._mm512_fmadd_ps(f._mm512_cvtepi32_ps(lanes), scale, acc);
        }
        let mut sum = f._mm512_reduce_add_ps(acc);
        if wd.len() % 2 == 1 {
            let (b, k) = (2 * pairs, 2 * pairs * Q8_BLOCK);
            sum += super::avx2::dot(*simd, &wq[k..], &wd[b..], &xq[k..], &xd[b..]);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [QFormat; 2] = [QFormat::Q8_0, QFormat::Q4_1];

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::SplitMix64::new(seed, "q8 test");
        (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
    }

    /// Q8_0 in the row layout, whatever the CPU.
    fn q8(data: &[f32], rows: usize, cols: usize) -> QMatrix {
        QMatrix::quantize(QFormat::Q8_0, data, rows, cols, false)
    }

    /// Q8_0 in the interleaved layout, whatever the CPU.
    fn q8x16(data: &[f32], rows: usize, cols: usize) -> QMatrix {
        let q = QMatrix::quantize(QFormat::Q8_0, data, rows, cols, true);
        assert!(matches!(q.blocks, Blocks::Q8_0x16 { .. }));
        q
    }

    /// A matrix quantized as its rows arrive, in pieces of any size (a loader's blocks of
    /// rows, which need not fill the interleaved layout's groups of 16), is the matrix
    /// quantized whole: the same values, layout, bytes and products.
    #[test]
    fn a_matrix_built_piece_by_piece_is_the_matrix_quantized_whole() {
        for (format, interleave, rows) in [
            (QFormat::Q8_0, false, 11),
            (QFormat::Q8_0, false, 48),
            (QFormat::Q8_0, true, 48),
            (QFormat::Q4_1, false, 48),
            (QFormat::Q4_1, false, 11),
        ] {
            let cols = 64;
            let w = values(rows * cols, 30);
            let whole = QMatrix::quantize(format, &w, rows, cols, interleave);
            for pieces in [vec![rows], vec![1; rows], vec![5, 1, rows - 6]] {
                let mut builder = QMatrix::builder_in(format, rows, cols, interleave);
                let mut at = 0;
                for n in &pieces {
                    builder.push(&w[at * cols..(at + n) * cols]);
                    at += n;
                }
                let built = builder.finish();
                let case = format!("{format:?} interleave {interleave}, {rows} rows in {pieces:?}");
                assert_eq!(built.interleaved(), whole.interleaved(), "{case}");
                assert_eq!(built.bytes(), whole.bytes(), "{case}");
                assert_eq!(built.dequantize(), whole.dequantize(), "{case}");
                let x = values(3 * cols, 31);
                assert_eq!(built.matmul(&x, 3), whole.matmul(&x, 3), "{case}");
            }
        }
        assert!(QMatrix::builder(QFormat::Q8_0, 16, 48).is_none());
    }

    /// An unfinished matrix is a caller's bug, reported as such.
    #[test]
    #[should_panic(expected = "3 of 16 rows arrived")]
    fn a_matrix_finished_before_its_last_rows_panics() {
        let mut builder = QMatrix::builder_in(QFormat::Q8_0, 16, 32, true);
        builder.push(&values(3 * 32, 32));
        builder.finish();
    }

    /// The interleaved layout holds the row layout's values (the same dequantized matrix, the
    /// same rows gathered, the same bytes), its products equal the row layout's within f32
    /// summation order, and every kernel (VNNI where the CPU has it, the portable one) gives
    /// the same products bit for bit, for 1 to 17 tokens (the VNNI kernel's passes of 8, 4, 2,
    /// 1).
    #[test]
    fn interleaved_weights_give_the_row_layouts_products() {
        for (cols, seed) in [(32, 20), (160, 21), (576, 22)] {
            let rows = 48;
            let w = values(rows * cols, seed);
            let (plain, x16) = (q8(&w, rows, cols), q8x16(&w, rows, cols));
            assert_eq!(plain.dequantize(), x16.dequantize(), "{cols} columns");
            assert_eq!(plain.bytes(), x16.bytes());
            assert_eq!(
                plain.gather_rows(&[0, 17, 47]),
                x16.gather_rows(&[0, 17, 47])
            );
            for tokens in [1, 2, 3, 6, 8, 11, 17] {
                let x = values(tokens * cols, seed + 100 + tokens as u64);
                let (a, b) = (plain.matmul(&x, tokens), x16.matmul(&x, tokens));
                for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{cols} columns, {tokens} tokens, y[{i}]: {a} vs {b}"
                    );
                }
                let outs = x16_kernel_outputs(&x16, &x, tokens);
                for (name, out) in &outs {
                    assert_eq!(out, &outs[0].1, "{name} vs {}, {tokens} tokens", outs[0].0);
                }
            }
        }
    }

    /// Every available kernel's `[rows, tokens]` products of an interleaved matrix, by name.
    fn x16_kernel_outputs(w: &QMatrix, x: &[f32], tokens: usize) -> Vec<(&'static str, Vec<f32>)> {
        let (rows, cols) = (w.rows(), w.cols());
        let Blocks::Q8_0x16 { qs, scales } = &w.blocks else {
            panic!("interleaved weights")
        };
        let mut xq = vec![0i8; x.len()];
        let xd = quantize_blocks(x, &mut xq);
        let input = X16Input::new(&xq, &xd, cols, tokens);
        Kernel::available()
            .into_iter()
            .map(|kernel| {
                let mut out = vec![0f32; rows * tokens];
                kernel.run_x16(X16Kernel {
                    wq: qs,
                    ahead: qs,
                    wd: scales,
                    x: &input,
                    cols,
                    tokens,
                    out: &mut out,
                });
                (kernel.name(), out)
            })
            .collect()
    }

    #[test]
    fn quantization_error_is_within_half_a_step() {
        let w = values(4 * 64, 1);
        for format in FORMATS {
            let q = QMatrix::from_rows(format, &w, 4, 64).unwrap();
            assert_eq!(q.format(), format);
            for (block, (orig, back)) in w
                .chunks_exact(32)
                .zip(q.dequantize().chunks_exact(32))
                .enumerate()
            {
                let (min, max) = orig
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let step = match format {
                    QFormat::Q8_0 => max.abs().max(min.abs()) / 127.0,
                    QFormat::Q4_1 => (max - min) / 15.0,
                };
                for (a, b) in orig.iter().zip(back) {
                    assert!(
                        (a - b).abs() <= 0.5 * step + 1e-6,
                        "{format:?} block {block}: {a} vs {b}"
                    );
                }
            }
            assert!(QMatrix::from_rows(format, &w, 8, 32).is_some());
            assert!(QMatrix::from_rows(format, &w[..4 * 48], 4, 48).is_none());
        }
        let bytes = |f| QMatrix::from_rows(f, &w, 4, 64).unwrap().bytes();
        assert_eq!(bytes(QFormat::Q8_0), 4 * 64 + 4 * 8);
        assert_eq!(bytes(QFormat::Q4_1), 4 * 32 + 8 * 8);
    }

    /// A block as a GGUF file holds it (GGML's Q4_1 layout: f16 d and m, then nibbles),
    /// dequantized by the GGUF reader and quantized again, gets the file's nibbles back and
    /// the same values: `--quant q4_1` on a Q4_1 file keeps the file's weights.
    #[test]
    fn a_gguf_q4_1_block_comes_back_unchanged() {
        let mut rng = crate::SplitMix64::new(3, "q4_1 block");
        for trial in 0..50 {
            let d = half::f16::from_f32((rng.unit() * 0.1 + 1e-3) as f32);
            let m = half::f16::from_f32((rng.unit() - 0.5) as f32);
            let mut nibbles: Vec<u8> = (0..32).map(|_| (rng.unit() * 16.0) as u8 % 16).collect();
            // a block quantized by GGML spans its whole range: 0 and 15 both occur
            nibbles[trial % 32] = 0;
            nibbles[(trial + 7) % 32] = 15;
            let mut block = Vec::new();
            block.extend(d.to_le_bytes());
            block.extend(m.to_le_bytes());
            block.extend((0..16).map(|j| nibbles[j] | (nibbles[j + 16] << 4)));
            let file_values =
                crate::weights::dequantize(crate::weights::GgmlType::Q4_1, &block, 32).unwrap();
            let q = QMatrix::from_rows(QFormat::Q4_1, &file_values, 1, 32).unwrap();
            let Blocks::Q4_1 { qs, .. } = &q.blocks else {
                panic!("Q4_1 blocks")
            };
            assert_eq!(&qs[..], &block[4..], "trial {trial}: nibbles");
            for (k, (a, b)) in file_values.iter().zip(q.dequantize()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "trial {trial}, value {k}: {a} vs {b}"
                );
            }
        }
    }

    /// The vectorised quantization rounds as the scalar definition does (half away from zero),
    /// ties included: values at exact half steps of their block's scale.
    #[test]
    fn vectorised_quantization_equals_the_scalar_definition() {
        let mut v = values(8 * 32, 12);
        // a block whose max is 127 (scale 1): every k + 0.5 is a tie, of both signs
        for (k, x) in v[..32].iter_mut().enumerate() {
            *x = if k == 0 {
                127.0
            } else {
                (k as f32 - 16.0) + 0.5
            };
        }
        // a block of zeros (scale 0) and one whose largest magnitude is negative
        v[32..64].fill(0.0);
        v[64] = -3.0;
        let mut q = vec![0i8; v.len()];
        let scales = quantize_blocks(&v, &mut q);
        for (b, (block, (q, &d))) in v
            .chunks_exact(32)
            .zip(q.chunks_exact(32).zip(&scales))
            .enumerate()
        {
            let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert_eq!(d, amax / 127.0, "block {b}: scale");
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (k, (&x, &q)) in block.iter().zip(q).enumerate() {
                assert_eq!(q, (x * inv).round() as i8, "block {b}, value {k}: {x}");
            }
        }
        assert_eq!(q[1], -15, "-14.5 rounds away from zero");
        assert_eq!(q[31], 16, "15.5 rounds away from zero");
        assert_eq!((scales[1], &q[32..64]), (0.0, &[0i8; 32][..]), "zeros");
        assert_eq!(q[64], -127, "the largest magnitude, negative");
    }

    #[test]
    fn matmul_equals_the_dequantized_product_in_f64() {
        let (rows, cols, tokens) = (70, 96, 5);
        let w = values(rows * cols, 2);
        let x = values(tokens * cols, 3);
        // Reference: the activations rounded the same way, multiplied in f64.
        let xq = q8(&x, tokens, cols).dequantize();
        for format in FORMATS {
            let q = QMatrix::from_rows(format, &w, rows, cols).unwrap();
            let y = q.matmul(&x, tokens);
            let wq = q.dequantize();
            for t in 0..tokens {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|c| f64::from(xq[t * cols + c]) * f64::from(wq[r * cols + c]))
                        .sum();
                    let got = f64::from(y[t * rows + r]);
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{format:?} y[{t},{r}] = {got}, want {want}"
                    );
                }
            }
            // And close to the exact f32 product (the quantization error itself).
            let exact: f64 = (0..cols).map(|c| f64::from(x[c]) * f64::from(w[c])).sum();
            let tolerance = if format == QFormat::Q8_0 { 0.05 } else { 0.3 };
            assert!(
                (f64::from(y[0]) - exact).abs() < tolerance,
                "{format:?}: {} vs {exact}",
                y[0]
            );
        }
    }

    /// Odd and even numbers of blocks (AVX-512 takes two at a time), including the full range
    /// of quantized values (±127 in every Q8_0 block, 0 and 15 in every Q4_1 block).
    #[test]
    fn every_kernel_gives_the_portable_result() {
        for cols in [160, 192, 32] {
            for format in FORMATS {
                every_kernel_gives_the_portable_result_for(format, cols);
            }
        }
    }

    fn every_kernel_gives_the_portable_result_for(format: QFormat, cols: usize) {
        // 11 tokens: more than the VNNI kernel's pass of 8
        for tokens in [1, 3, 11] {
            let outs = kernel_outputs(format, cols, tokens);
            let portable = &outs.last().expect("the portable kernel").1;
            for (name, out) in &outs {
                for (i, (a, b)) in portable.iter().zip(out).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{format:?}, {cols} columns, {tokens} tokens, {name}, out[{i}]: {a} vs {b}"
                    );
                }
            }
            // the VNNI kernel sums the AVX-512 kernel's integer lanes in its order
            let named = |n: &str| outs.iter().find(|(name, _)| *name == n).map(|(_, o)| o);
            if let (Some(vnni), Some(avx512)) = (named("vnni"), named("avx512"))
                && format == QFormat::Q8_0
                && (cols / Q8_BLOCK).is_multiple_of(2)
            {
                assert_eq!(vnni, avx512, "{cols} columns, {tokens} tokens");
            }
        }
    }

    /// Every available kernel's `[rows, tokens]` products of one random matrix, by name, the
    /// portable one last.
    fn kernel_outputs(
        format: QFormat,
        cols: usize,
        tokens: usize,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let rows = 9;
        let w = QMatrix::from_rows(format, &values(rows * cols, 5), rows, cols).unwrap();
        let x = q8(&values(tokens * cols, 6), tokens, cols);
        let Blocks::Q8_0 { qs: xq, scales: xd } = &x.blocks else {
            panic!("Q8_0 activations")
        };
        let xs: Vec<f32> = xq
            .chunks_exact(Q8_BLOCK)
            .zip(xd)
            .map(|(q, &d)| d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32)
            .collect();
        let vnni = VnniInput::new(xq, xd, cols);
        let run = |kernel: Kernel| {
            let mut out = vec![0f32; rows * tokens];
            match &w.blocks {
                Blocks::Q8_0 { qs, scales } => kernel.run(RowsKernel {
                    wq: qs,
                    wd: scales,
                    xq,
                    xd,
                    vnni: &vnni,
                    cols,
                    tokens,
                    out: &mut out,
                }),
                Blocks::Q4_1 { qs, scales, mins } => kernel.run_q4_1(Q4RowsKernel {
                    wq: qs,
                    wd: scales,
                    wm: mins,
                    xq,
                    xd,
                    xs: &xs,
                    cols,
                    tokens,
                    out: &mut out,
                }),
                Blocks::Q8_0x16 { .. } => unreachable!("9 rows are never interleaved"),
            }
            out
        };
        Kernel::available()
            .into_iter()
            .map(|kernel| (kernel.name(), run(kernel)))
            .collect()
    }

    /// Batched decoding relies on it: a token's products do not depend on the other tokens of
    /// the batch, bit for bit, whatever their number.
    #[test]
    fn a_tokens_product_does_not_depend_on_its_batch() {
        let cols = 96;
        let interleaved = q8x16(&values(32 * cols, 10), 32, cols);
        for (format, w) in FORMATS
            .map(|f| {
                (
                    f,
                    QMatrix::from_rows(f, &values(11 * cols, 10), 11, cols).unwrap(),
                )
            })
            .into_iter()
            .chain([(QFormat::Q8_0, interleaved)])
        {
            let rows = w.rows();
            // interleaved: more tokens than a pass of 8, as a prompt's
            for tokens in 1..=if rows == 32 { 20 } else { 8 } {
                let x = values(tokens * cols, 11 + tokens as u64);
                let batch = w.matmul(&x, tokens);
                for (t, token) in x.chunks_exact(cols).enumerate() {
                    assert_eq!(
                        &batch[t * rows..(t + 1) * rows],
                        &w.matmul(token, 1)[..],
                        "{format:?}: token {t} of {tokens}"
                    );
                }
            }
        }
    }

    /// A product split over several tasks of rows (576 columns: 28 rows a task, 32 when
    /// interleaved) comes back token by token in order, as `[tokens, rows]` from
    /// [`QMatrix::matmul`] and as one vector per token from [`QMatrix::matmul_by_token`]: each
    /// token's row equals its product alone, bit for bit, also past one pass of tokens.
    #[test]
    fn products_of_several_tasks_come_back_token_by_token() {
        let (rows, cols) = (100, 576);
        let w = values(rows * cols, 30);
        for (name, m) in [
            ("Q8_0", q8(&w, rows, cols)),
            ("Q8_0 interleaved", q8x16(&w[..96 * cols], 96, cols)),
            (
                "Q4_1",
                QMatrix::from_rows(QFormat::Q4_1, &w, rows, cols).unwrap(),
            ),
        ] {
            let rows = m.rows();
            for tokens in [1, 2, 6, 9, TOKENS_PER_PASS + 3] {
                let x = values(tokens * cols, 31 + tokens as u64);
                let alone: Vec<Vec<f32>> = x.chunks_exact(cols).map(|t| m.matmul(t, 1)).collect();
                let flat = m.matmul(&x, tokens);
                let by_token = m.matmul_by_token(&x, tokens);
                assert_eq!(by_token.len(), tokens, "{name}, {tokens} tokens");
                for (t, want) in alone.iter().enumerate() {
                    assert_eq!(want.len(), rows);
                    assert_eq!(
                        &flat[t * rows..(t + 1) * rows],
                        &want[..],
                        "{name}: token {t} of {tokens}"
                    );
                    assert_eq!(
                        &by_token[t], want,
                        "{name}: token {t} of {tokens}, by token"
                    );
                }
            }
        }
    }

    #[test]
    fn products_in_one_pass_equal_separate_products() {
        let (cols, tokens) = (64, 3);
        let a = q8(&values(5 * cols, 7), 5, cols);
        let b = QMatrix::from_rows(QFormat::Q4_1, &values(130 * cols, 8), 130, cols).unwrap();
        let x = values(tokens * cols, 9);
        let both = QMatrix::matmul_many(&[&a, &b], &x, tokens);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], a.matmul(&x, tokens));
        assert_eq!(both[1], b.matmul(&x, tokens));
        assert_eq!(both[1].len(), tokens * 130);
    }

    #[test]
    fn input_major_weights_are_transposed() {
        let (d_in, d_out) = (64, 3);
        let w_in_out = values(d_in * d_out, 4);
        for (format, tolerance) in [(QFormat::Q8_0, 0.01), (QFormat::Q4_1, 0.07)] {
            let q = QMatrix::from_columns(format, &w_in_out, d_in, d_out).unwrap();
            assert_eq!((q.rows(), q.cols()), (d_out, d_in));
            let back = q.dequantize();
            for i in 0..d_in {
                for o in 0..d_out {
                    assert!((back[o * d_in + i] - w_in_out[i * d_out + o]).abs() < tolerance);
                }
            }
            // a row read alone equals the same row of the whole matrix
            assert_eq!(q.gather_rows(&[2]), back[2 * d_in..].to_vec());
        }
    }
}

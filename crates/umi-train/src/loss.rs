//! The causal-LM loss on target tokens.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use umi_data::batch::{Batch, IGNORE_INDEX};
use umi_model::Llama;

/// Shortest shared prompt prefix worth computing once for a whole micro-batch, in tokens.
pub const MIN_SHARED_PREFIX: usize = 16;

/// Length of the token prefix that every row of `batch` shares and that lies wholly before
/// each row's first target: the positions whose hidden states no loss term reads and whose
/// keys and values are the same in every row. 0 for a batch of one row.
///
/// On α-UMi role samples this is the system prompt with the tool documentation, the same for
/// every sample of a tool set (often most of the prompt).
pub fn shared_prefix_len(batch: &Batch) -> usize {
    let rows = &batch.input_ids;
    if rows.len() < 2 {
        return 0;
    }
    let first = &rows[0];
    let mut len = first.len();
    for (row, labels) in rows.iter().zip(&batch.labels) {
        let common = first.iter().zip(row).take_while(|(a, b)| a == b).count();
        // the hidden state at t predicts labels[t + 1]: keep t < (first target) - 1 out of the
        // prefix, so every position the loss reads is in the per-row part
        let first_target = labels
            .iter()
            .skip(1)
            .position(|&l| l != IGNORE_INDEX)
            .map_or(row.len(), |i| i + 1);
        len = len.min(common).min(first_target.saturating_sub(1));
    }
    len
}

/// Most attention scores (rows × new positions × attended positions, per head and layer) one
/// training forward may hold: a micro-batch above it is split into row chunks whose gradients are
/// accumulated one after the other ([`split_rows`]), which gives the same loss and gradients in
/// bounded memory. For SmolLM2 (30 layers, 9 heads, f32, the copies autodiff keeps) a chunk at
/// the bound holds about 6 GB of attention and 2–3 GB of other activations: measured, 8 rows of
/// about 400 new tokens after a 700-token shared prefix (3.5 Mi scores) peaked at 17 GB, and
/// runs beside builds on a 23 GB machine were OOM-killed at that size.
pub const MAX_ATTENTION_SCORES: usize = 2 << 20;

/// `batch` as row chunks that each stay within [`MAX_ATTENTION_SCORES`] (given the prefix all of
/// `batch`'s rows share), in order; the batch itself (one chunk) when it fits. Every chunk has at
/// least one row.
pub fn split_rows(batch: &Batch) -> Vec<Batch> {
    let rows = batch.input_ids.len();
    let cols = batch.input_ids.first().map_or(0, Vec::len);
    let prefix = match shared_prefix_len(batch) {
        p if p >= MIN_SHARED_PREFIX => p,
        _ => 0,
    };
    let per_row = (cols - prefix) * cols;
    let fit = (MAX_ATTENTION_SCORES / per_row.max(1)).max(1);
    if fit >= rows {
        return vec![batch.clone()];
    }
    (0..rows)
        .step_by(fit)
        .map(|start| {
            let end = (start + fit).min(rows);
            Batch {
                input_ids: batch.input_ids[start..end].to_vec(),
                labels: batch.labels[start..end].to_vec(),
                attention_mask: batch.attention_mask[start..end].to_vec(),
            }
        })
        .collect()
}

/// Final hidden states of a micro-batch, with a prompt prefix shared by all its rows computed
/// once ([`shared_prefix_len`], when at least [`MIN_SHARED_PREFIX`] tokens): the prefix runs
/// as a batch of one, its keys and values are repeated for every row ([`umi_model::KvCache::repeat_batch`])
/// and only the rows' remaining tokens run batched. The hidden states returned are those of
/// positions `prefix..seq_len`, identical (up to float rounding) to the same positions of the
/// unshared forward; under autodiff the prefix's gradients are the sum over rows, as unshared.
/// LoRA dropout on the prefix positions draws one mask for all rows instead of one per row.
///
/// # Shapes
///
/// - batch: `batch_size` rows of `seq_len` tokens
/// - output: (`[batch_size, seq_len - prefix, hidden_size]`, `prefix`)
pub fn batch_hidden(
    model: &Llama,
    batch: &Batch,
    device: &burn::tensor::Device,
) -> (Tensor<3>, usize) {
    let (rows, cols) = (batch.input_ids.len(), batch.input_ids[0].len());
    let prefix = shared_prefix_len(batch);
    let prefix = if prefix >= MIN_SHARED_PREFIX {
        prefix
    } else {
        0
    };
    let mut cache = model.new_cache();
    if prefix > 0 {
        let ids: Vec<i64> = batch.input_ids[0][..prefix]
            .iter()
            .map(|&t| i64::from(t))
            .collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prefix]), device);
        let _ = model.forward_hidden(input, &mut cache);
        for layer in &mut cache {
            layer.repeat_batch(rows);
        }
    }
    let ids: Vec<i64> = batch
        .input_ids
        .iter()
        .flat_map(|row| row[prefix..].iter().map(|&t| i64::from(t)))
        .collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, cols - prefix]), device);
    (model.forward_hidden(input, &mut cache), prefix)
}

/// [`causal_lm_loss_from_hidden`] of one micro-batch through [`batch_hidden`] (a shared prompt
/// prefix computed once). Same value and gradients as the unshared computation.
pub fn batch_loss(
    model: &Llama,
    batch: &Batch,
    device: &burn::tensor::Device,
) -> Option<(Tensor<1>, usize)> {
    let (hidden, prefix) = batch_hidden(model, batch, device);
    if prefix == 0 {
        return causal_lm_loss_from_hidden(model, hidden, &batch.labels);
    }
    let labels: Vec<Vec<i64>> = batch.labels.iter().map(|r| r[prefix..].to_vec()).collect();
    causal_lm_loss_from_hidden(model, hidden, &labels)
}

/// Mean cross-entropy of predicting `labels[b][t + 1]` from position `t`, over every pair whose
/// label is not [`IGNORE_INDEX`] (-100) in the whole batch — Hugging Face's `ForCausalLMLoss`
/// with `reduction="mean"`. Returns the loss and the number of target tokens; `None` when the
/// batch has no target token at all.
///
/// # Shapes
///
/// - logits: `[batch_size, seq_len, vocab_size]`
/// - labels: `batch_size` rows of `seq_len`
/// - output: `[1]`
pub fn causal_lm_loss(logits: Tensor<3>, labels: &[Vec<i64>]) -> Option<(Tensor<1>, usize)> {
    let [batch_size, seq_len, vocab_size] = logits.dims();
    let (rows, targets) = target_positions(labels, batch_size, seq_len);
    if rows.is_empty() {
        return None;
    }
    let device = logits.device();
    let picked = logits
        .reshape([batch_size * seq_len, vocab_size])
        .select(0, int_tensor(rows, &device)); // [n, vocab_size]
    Some(mean_nll(picked, targets))
}

/// [`causal_lm_loss`] from the final hidden states ([`Llama::forward_hidden`]): the LM head
/// runs only at the positions that predict a target token, not over the whole sequence. Same
/// value and gradients; on GLPFT samples (long prompts, short targets) it skips most of the
/// LM head's matmul, softmax and their backward (for SmolLM2, 49152 logits per position).
///
/// # Shapes
///
/// - hidden: `[batch_size, seq_len, hidden_size]`
/// - labels: `batch_size` rows of `seq_len`
/// - output: `[1]`
pub fn causal_lm_loss_from_hidden(
    model: &Llama,
    hidden: Tensor<3>,
    labels: &[Vec<i64>],
) -> Option<(Tensor<1>, usize)> {
    let [batch_size, seq_len, hidden_size] = hidden.dims();
    let (rows, targets) = target_positions(labels, batch_size, seq_len);
    let n = rows.len();
    if n == 0 {
        return None;
    }
    let device = hidden.device();
    let picked = hidden
        .reshape([batch_size * seq_len, hidden_size])
        .select(0, int_tensor(rows, &device)); // [n, hidden_size]
    let vocab_size = model.config.vocab_size;
    match model.head_weight() {
        // the LM head and the loss in one operation, without the [n, vocab_size] logits
        Some(weight) if targets.iter().all(|&t| (0..vocab_size as i64).contains(&t)) => {
            let targets: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
            Some((
                umi_model::ops::linear_cross_entropy(picked, weight, &targets),
                n,
            ))
        }
        _ => {
            let logits = model.logits(picked.reshape([1, n, hidden_size])); // [1, n, vocab_size]
            Some(mean_nll(logits.reshape([n, vocab_size]), targets))
        }
    }
}

/// Flat positions `b·seq_len + t` whose next label `labels[b][t + 1]` is a target, and those
/// labels.
fn target_positions(
    labels: &[Vec<i64>],
    batch_size: usize,
    seq_len: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (b, row) in labels.iter().enumerate().take(batch_size) {
        for t in 0..seq_len.saturating_sub(1) {
            let label = row.get(t + 1).copied().unwrap_or(IGNORE_INDEX);
            if label != IGNORE_INDEX {
                rows.push((b * seq_len + t) as i64);
                targets.push(label);
            }
        }
    }
    (rows, targets)
}

fn int_tensor(values: Vec<i64>, device: &burn::tensor::Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::<1, Int>::from_data(TensorData::new(values, [n]), device)
}

/// Mean negative log-likelihood of `targets` under `logits` (`[n, vocab_size]`), and `n`.
fn mean_nll(logits: Tensor<2>, targets: Vec<i64>) -> (Tensor<1>, usize) {
    let n = targets.len();
    let device = logits.device();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
    let log_probs = log_softmax(logits, 1);
    let nll = log_probs.gather(1, targets).neg(); // [n, 1]
    (nll.sum().div_scalar(n as f64), n)
}

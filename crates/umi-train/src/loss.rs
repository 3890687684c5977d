//! The causal-LM loss on target tokens.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use umi_data::batch::IGNORE_INDEX;

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
    let n = rows.len();
    if n == 0 {
        return None;
    }
    let device = logits.device();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
    let picked = logits
        .reshape([batch_size * seq_len, vocab_size])
        .select(0, rows); // [n, vocab_size]
    let log_probs = log_softmax(picked, 1);
    let nll = log_probs.gather(1, targets).neg(); // [n, 1]
    Some((nll.sum().div_scalar(n as f64), n))
}

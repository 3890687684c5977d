//! The causal-LM loss on target tokens.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use umi_data::batch::IGNORE_INDEX;
use umi_model::Llama;

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
        .select(0, int_tensor(rows, &device))
        .reshape([1, n, hidden_size]);
    let logits = model.logits(picked); // [1, n, vocab_size]
    let vocab_size = logits.dims()[2];
    Some(mean_nll(logits.reshape([n, vocab_size]), targets))
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

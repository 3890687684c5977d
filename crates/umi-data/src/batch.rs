//! Role samples as training tensors, as `GLPFT/train.py`'s `preprocess()` builds them: the input
//! is `"system: " + input` (with BOS), the target is `target + EOS`; the loss sees only the
//! target (`-100` elsewhere); too-long examples keep their *end* (left truncation); batches are
//! right-padded and grouped by length.

use serde::Serialize;

use crate::samples::RoleSample;

/// Label of positions the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingExample {
    /// Token ids, `len ≤ max_len`.
    pub input_ids: Vec<u32>,
    /// Same length: the token id where the loss applies, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
}

/// Builds a [`TrainingExample`] from a sample.
///
/// `encode(text, add_bos)` is the model's tokenizer; `eos_id` ends the target (the reference
/// appends the text `</s>`, which the LLaMA tokenizer maps to EOS).
pub fn tokenize_sample(
    sample: &RoleSample,
    encode: &mut impl FnMut(&str, bool) -> Vec<u32>,
    eos_id: u32,
    max_len: usize,
) -> TrainingExample {
    let prompt = encode(&format!("system: {}", sample.input), true);
    let mut target = encode(&sample.target, false);
    target.push(eos_id);
    let mut input_ids = prompt.clone();
    input_ids.extend_from_slice(&target);
    let mut labels: Vec<i64> = vec![IGNORE_INDEX; prompt.len()];
    labels.extend(target.iter().map(|&t| t as i64));
    if input_ids.len() > max_len {
        let cut = input_ids.len() - max_len;
        input_ids.drain(..cut);
        labels.drain(..cut);
    }
    TrainingExample { input_ids, labels }
}

/// A right-padded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[batch_size][seq_len]` token ids, padded with the pad id.
    pub input_ids: Vec<Vec<u32>>,
    /// `[batch_size][seq_len]` labels, padded with [`IGNORE_INDEX`].
    pub labels: Vec<Vec<i64>>,
    /// `[batch_size][seq_len]`: 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u8>>,
}

/// Groups examples of similar length into batches of at most `batch_size` (less padding), then
/// orders the batches by a seeded shuffle so training does not see lengths in order.
pub fn length_bucketed_batches(
    examples: &[TrainingExample],
    batch_size: usize,
    pad_id: u32,
    seed: u64,
) -> Vec<Batch> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (examples[i].input_ids.len(), i));
    let mut batches: Vec<Batch> = order
        .chunks(batch_size)
        .map(|chunk| {
            let seq_len = chunk
                .iter()
                .map(|&i| examples[i].input_ids.len())
                .max()
                .unwrap_or(0);
            let mut batch = Batch {
                input_ids: vec![],
                labels: vec![],
                attention_mask: vec![],
            };
            for &i in chunk {
                let e = &examples[i];
                let pad = seq_len - e.input_ids.len();
                batch.input_ids.push(
                    e.input_ids
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(pad_id, pad))
                        .collect(),
                );
                batch.labels.push(
                    e.labels
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(IGNORE_INDEX, pad))
                        .collect(),
                );
                batch.attention_mask.push(
                    std::iter::repeat_n(1u8, e.input_ids.len())
                        .chain(std::iter::repeat_n(0, pad))
                        .collect(),
                );
            }
            batch
        })
        .collect();
    seeded_shuffle(&mut batches, seed);
    batches
}

/// Shuffles `items` in place, the same way for the same seed on every platform: the order of
/// training batches and preference pairs ([`umi_util::SplitMix64::shuffle`] over the stream whose
/// state starts at `seed`).
pub fn seeded_shuffle<T>(items: &mut [T], seed: u64) {
    umi_util::SplitMix64::from_state(seed).shuffle(items);
}

/// A prompt/completion record as TRL's `SFTTrainer` reads it (`completion_only_loss`), for
/// training on a cluster: the same text the local trainer tokenizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptCompletion {
    /// `"system: " + input`.
    pub prompt: String,
    /// `target` followed by the model's EOS text.
    pub completion: String,
}

/// The TRL record of a sample; `eos_text` is the tokenizer's EOS token (`</s>` for TinyLlama).
pub fn prompt_completion(sample: &RoleSample, eos_text: &str) -> PromptCompletion {
    PromptCompletion {
        prompt: format!("system: {}", sample.input),
        completion: format!("{}{eos_text}", sample.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per byte, BOS = 1.
    fn encode(text: &str, bos: bool) -> Vec<u32> {
        let mut ids: Vec<u32> = if bos { vec![1] } else { vec![] };
        ids.extend(text.bytes().map(u32::from));
        ids
    }

    fn sample(input: &str, target: &str) -> RoleSample {
        RoleSample {
            tools: vec![],
            history: vec![],
            input: input.into(),
            target: target.into(),
        }
    }

    #[test]
    fn prompt_is_masked_and_target_ends_with_eos() {
        let e = tokenize_sample(&sample("q", "ab"), &mut encode, 2, 100);
        let prompt_len = 1 + "system: q".len();
        assert_eq!(e.input_ids.len(), prompt_len + 3);
        assert!(e.labels[..prompt_len].iter().all(|&l| l == IGNORE_INDEX));
        assert_eq!(&e.labels[prompt_len..], &[b'a' as i64, b'b' as i64, 2]);
        assert_eq!(e.input_ids[prompt_len..], [b'a' as u32, b'b' as u32, 2]);
    }

    #[test]
    fn long_examples_keep_their_end() {
        let e = tokenize_sample(&sample("a long question", "xy"), &mut encode, 2, 5);
        assert_eq!(
            e.input_ids,
            vec![b'o' as u32, b'n' as u32, b'x' as u32, b'y' as u32, 2]
        );
        assert_eq!(
            e.labels,
            vec![IGNORE_INDEX, IGNORE_INDEX, b'x' as i64, b'y' as i64, 2]
        );
    }

    #[test]
    fn batches_are_bucketed_padded_and_seeded() {
        let examples: Vec<TrainingExample> = [3usize, 9, 4, 8, 5]
            .iter()
            .map(|&n| TrainingExample {
                input_ids: vec![7; n],
                labels: vec![7; n],
            })
            .collect();
        let batches = length_bucketed_batches(&examples, 2, 0, 1);
        assert_eq!(batches.len(), 3);
        let mut widths: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.input_ids.iter().map(Vec::len).collect())
            .collect();
        widths.sort();
        assert_eq!(
            widths,
            vec![vec![4, 4], vec![8, 8], vec![9]],
            "lengths 3,4 / 5,8 / 9 padded to the batch max"
        );
        let b = batches
            .iter()
            .find(|b| b.input_ids.len() == 2 && b.input_ids[0].len() == 4)
            .unwrap();
        assert_eq!(b.attention_mask[0], vec![1, 1, 1, 0]);
        assert_eq!(b.labels[0][3], IGNORE_INDEX);
        assert_eq!(
            length_bucketed_batches(&examples, 2, 0, 1),
            batches,
            "same seed, same order"
        );
    }

    #[test]
    fn trl_records_are_the_same_text() {
        let r = prompt_completion(&sample("q", "a"), "</s>");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"prompt":"system: q","completion":"a</s>"}"#
        );
    }
}

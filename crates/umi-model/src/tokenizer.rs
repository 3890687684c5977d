//! `Tokenizer`: Hugging Face `tokenizers` behind one small interface, built from a
//! `tokenizer.json` or from GGUF tokenizer metadata (`gpt2` byte-level BPE and `llama`
//! SentencePiece kinds, following llama.cpp's `llama-vocab.cpp` definitions).

use std::io::{Read, Seek};
use std::path::Path;

use serde_json::{Value, json};

use crate::chat::ChatTemplate;
use crate::weights::GgufFile;
use crate::{Error, Result};

/// Text ↔ token ids for one model.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

fn tok_error(file: &str, message: impl ToString) -> Error {
    Error::Tokenizer {
        file: file.to_string(),
        message: message.to_string(),
    }
}

/// Checks what tokenizers 0.23 assumes of a BPE model without checking it: with a
/// `continuing_subword_prefix`, every merge's second token starts with it (tokenizers slices the
/// prefix off by its length, which panicked, or cut a character, on a shorter or different
/// token; found by fuzzing).
fn check_bpe_merges(json: &Value) -> std::result::Result<(), String> {
    let model = &json["model"];
    let Some(prefix) = model["continuing_subword_prefix"].as_str() else {
        return Ok(());
    };
    let Some(merges) = model["merges"].as_array() else {
        return Ok(());
    };
    for (i, merge) in merges.iter().enumerate() {
        let second = match merge {
            Value::String(s) => s.split_once(' ').map(|(_, b)| b),
            Value::Array(pair) => pair.get(1).and_then(Value::as_str),
            _ => None,
        };
        if let Some(b) = second
            && !b.starts_with(prefix)
        {
            return Err(format!(
                "merge {i} ({merge}): its second token does not start with the \
                 continuing_subword_prefix {prefix:?}"
            ));
        }
    }
    Ok(())
}

impl Tokenizer {
    /// Longest token (in UTF-8 bytes) a GGUF vocabulary may hold: real vocabularies stay far
    /// below it, and it bounds the work of deriving SentencePiece merges (quadratic in a
    /// token's length).
    pub const MAX_TOKEN_BYTES: usize = 1024;

    /// Wraps a Hugging Face tokenizer.
    ///
    /// Padding and truncation settings of the tokenizer are switched off: umi encodes one text
    /// at a time and fits prompts to the context itself (a `tokenizer.json` asking for
    /// `"padding": {"strategy": {"Fixed": 1000000000}}` would otherwise allocate a billion
    /// tokens per call, and `truncation` would silently cut prompts).
    pub fn new(
        mut inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        add_bos: bool,
    ) -> Self {
        // One thread: rayon is unavailable in the browser, and prompts are short.
        tokenizers::utils::parallelism::set_parallelism(false);
        inner.with_padding(None);
        // Only a new truncation setting can be refused; removing it cannot fail.
        let _ = inner.with_truncation(None);
        Self {
            inner,
            bos_id,
            eos_ids,
            add_bos,
        }
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text (saved beside exported checkpoints).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if it cannot be serialised.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| tok_error("tokenizer", e))
    }

    /// The tokenizer as Hugging Face files for a model folder: `tokenizer.json` and
    /// `tokenizer_config.json`, such that both umi ([`crate::load_hf_folder`]) and
    /// `transformers.AutoTokenizer` encode as this tokenizer does.
    ///
    /// `tokenizer_config.json` names the BOS/EOS tokens, `add_bos_token`, `model_max_length`
    /// and the chat template ([`ChatTemplate::jinja`]; none for [`ChatTemplate::Raw`]). When this
    /// tokenizer prepends BOS and `tokenizer.json` has no post-processor, one is added that
    /// prepends it (transformers adds special tokens through the post-processor; umi encodes
    /// without it and prepends BOS itself, so it is not added twice).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if the tokenizer cannot be serialised.
    pub fn to_hf_files(
        &self,
        chat_template: &ChatTemplate,
        model_max_length: usize,
    ) -> Result<(String, String)> {
        let token = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
        let bos = token(self.bos_id);
        let eos = token(self.eos_ids.first().copied());
        let mut inner = self.inner.clone();
        if self.add_bos
            && inner.get_post_processor().is_none()
            && let (Some(bos), Some(id)) = (&bos, self.bos_id)
        {
            let template = tokenizers::processors::template::TemplateProcessing::builder()
                .try_single(format!("{bos}:0 $A:0"))
                .and_then(|b| b.try_pair(format!("{bos}:0 $A:0 {bos}:1 $B:1")))
                .map_err(|e| tok_error("tokenizer", e))?
                .special_tokens(vec![(bos.clone(), id)])
                .build()
                .map_err(|e| tok_error("tokenizer", e))?;
            inner.with_post_processor(Some(template));
        }
        let tokenizer_json = inner
            .to_string(true)
            .map_err(|e| tok_error("tokenizer", e))?;
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos,
            "add_eos_token": false,
            "bos_token": bos,
            "eos_token": eos,
            "model_max_length": model_max_length,
            "clean_up_tokenization_spaces": false,
        });
        if let Some(jinja) = chat_template.jinja() {
            config["chat_template"] = Value::String(jinja);
        }
        let config = serde_json::to_string_pretty(&config).expect("JSON values serialise");
        Ok((tokenizer_json, config))
    }

    /// Whether [`Tokenizer::encode`] with `add_bos` prepends the BOS id (the model's
    /// `add_bos_token`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos_id.is_some()
    }

    /// Reads a Hugging Face `tokenizer.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Tokenizer`] naming the file.
    pub fn from_file(
        path: &Path,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        add_bos: bool,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(
            &bytes,
            &path.display().to_string(),
            bos_id,
            eos_ids,
            add_bos,
        )
    }

    /// Reads a Hugging Face `tokenizer.json` already in memory (browser uploads); `file` names it
    /// in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming `file` when it cannot be parsed, or when `bos_id` or one of
    /// `eos_ids` (the config's `bos_token_id` / `eos_token_id`) is not in its vocabulary.
    pub fn from_bytes(
        bytes: &[u8],
        file: &str,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        add_bos: bool,
    ) -> Result<Self> {
        // tokenizers 0.23 panics ("Helper") instead of failing when the JSON is malformed
        // inside `"decoder"` (found by fuzzing): check the syntax, nesting limit included, first.
        let json: Value = serde_json::from_slice(bytes).map_err(|e| tok_error(file, e))?;
        check_bpe_merges(&json).map_err(|e| tok_error(file, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| tok_error(file, e))?;
        let tokenizer = Self::new(inner, bos_id, eos_ids, add_bos);
        tokenizer.check_special_ids(file, "bos_token_id", "eos_token_id")?;
        Ok(tokenizer)
    }

    /// Checks that the BOS and EOS ids are tokens of the vocabulary (an id outside it would
    /// fail at the first token instead of at load); `bos` and `eos` name their fields.
    fn check_special_ids(&self, file: &str, bos: &str, eos: &str) -> Result<()> {
        let ids = self.bos_id.iter().map(|&id| (bos, id));
        for (field, id) in ids.chain(self.eos_ids.iter().map(|&id| (eos, id))) {
            if self.inner.id_to_token(id).is_none() {
                return Err(tok_error(
                    file,
                    format!(
                        "{field} = {id} is not in the vocabulary ({} tokens)",
                        self.vocab_size()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    ///
    /// Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE; pre-tokenizers `default`,
    /// `gpt2`, `smollm`) and `"llama"` (SentencePiece BPE with byte fallback; merges derived from
    /// the scores when the file has none, as `transformers`' SentencePiece converter does).
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming the file when the metadata is missing, inconsistent or of an
    /// unsupported kind, when a token is longer than [`Tokenizer::MAX_TOKEN_BYTES`] (naming its
    /// index), or when the BOS/EOS id is not in the vocabulary.
    pub fn from_gguf<R: Read + Seek>(gguf: &GgufFile<R>) -> Result<Self> {
        let file = gguf.name();
        let kind = gguf
            .string("tokenizer.ggml.model")
            .map_err(|_| tok_error(file, "tokenizer.ggml.model is missing"))?;
        let tokens = gguf
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| tok_error(file, "tokenizer.ggml.tokens is missing"))?;
        if let Some((i, token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > Self::MAX_TOKEN_BYTES)
        {
            return Err(tok_error(
                file,
                format!(
                    "tokenizer.ggml.tokens[{i}] is {} bytes long, more than the {} a token may have",
                    token.len(),
                    Self::MAX_TOKEN_BYTES
                ),
            ));
        }
        let types = gguf.numbers("tokenizer.ggml.token_type")?;
        if let Some(types) = &types
            && types.len() != tokens.len()
        {
            return Err(tok_error(
                file,
                format!("{} token types for {} tokens", types.len(), tokens.len()),
            ));
        }
        let token_type = |i: usize| types.as_ref().map(|t| t[i] as i64).unwrap_or(1);
        // control (3) and user-defined (4) tokens are matched verbatim in text
        let added: Vec<Value> = (0..tokens.len())
            .filter(|&i| matches!(token_type(i), 3 | 4))
            .map(|i| {
                json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": token_type(i) == 3})
            })
            .collect();
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        if vocab.len() != tokens.len() {
            return Err(tok_error(
                file,
                "tokenizer.ggml.tokens contains duplicate tokens",
            ));
        }
        let merges = gguf.strings("tokenizer.ggml.merges")?;
        let bos_id = gguf.token_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = gguf.token_id("tokenizer.ggml.eos_token_id")?;
        let spec = match kind.as_str() {
            "gpt2" => {
                let pre = gguf
                    .string_opt("tokenizer.ggml.pre")
                    .unwrap_or_else(|| "default".into());
                let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
                let pre_tokenizer = match pre.as_str() {
                    "default" | "gpt2" | "gpt-2" => byte_level.clone(),
                    "smollm" => json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
                    other => {
                        return Err(tok_error(
                            file,
                            format!(
                                "pre-tokenizer {other:?} is not supported (supported: default, gpt2, smollm)"
                            ),
                        ));
                    }
                };
                json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added, "normalizer": null, "pre_tokenizer": pre_tokenizer,
                    "post_processor": byte_level, "decoder": byte_level,
                    "model": {"type": "BPE", "dropout": null, "unk_token": null,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                              "vocab": vocab, "merges": merges.unwrap_or_default()}
                })
            }
            "llama" => {
                let merges = match merges {
                    Some(m) => m,
                    None => {
                        let scores = gguf.numbers("tokenizer.ggml.scores")?.ok_or_else(|| {
                            tok_error(file, "a llama (SentencePiece) tokenizer needs tokenizer.ggml.scores or merges")
                        })?;
                        spm_merges(&tokens, &scores, &|i| token_type(i))
                    }
                };
                let unk = gguf
                    .token_id("tokenizer.ggml.unknown_token_id")?
                    .and_then(|i| tokens.get(i as usize).cloned())
                    .unwrap_or_else(|| "<unk>".into());
                let prefix = gguf
                    .metadata("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true);
                let mut normalizers = vec![];
                if prefix {
                    normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
                }
                normalizers
                    .push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
                let mut decoders = vec![
                    json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if prefix {
                    decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added,
                    "normalizer": {"type": "Sequence", "normalizers": normalizers},
                    "pre_tokenizer": null, "post_processor": null,
                    "decoder": {"type": "Sequence", "decoders": decoders},
                    "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                              "vocab": vocab, "merges": merges}
                })
            }
            other => {
                return Err(tok_error(
                    file,
                    format!(
                        "tokenizer.ggml.model = {other:?} is not supported (supported: gpt2, llama)"
                    ),
                ));
            }
        };
        let inner = tokenizers::Tokenizer::from_bytes(spec.to_string().as_bytes())
            .map_err(|e| tok_error(file, e))?;
        let add_bos = gguf
            .metadata("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(kind == "llama");
        let tokenizer = Self::new(inner, bos_id, eos_id.into_iter().collect(), add_bos);
        tokenizer.check_special_ids(
            file,
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
        )?;
        Ok(tokenizer)
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence ids (generation stops on any of them).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The id of a token written out (`"<|im_end|>"`), if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes `text`; special tokens written in the text (`<|im_start|>`) become their ids.
    /// A BOS id is prepended when `add_bos` is set and the model asks for one.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if the tokenizer fails.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_error("tokenizer", e))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if add_bos
            && self.add_bos
            && let Some(bos) = self.bos_id
        {
            ids.push(bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text, optionally dropping special tokens.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if an id is out of range.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_error("tokenizer", e))
    }
}

/// Merges for a SentencePiece BPE vocabulary: every split of a normal token into two normal
/// tokens, ranked by the merged token's score (highest first), then by the pieces' ids.
fn spm_merges(tokens: &[String], scores: &[f64], token_type: &dyn Fn(usize) -> i64) -> Vec<String> {
    use std::collections::HashMap;
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| token_type(*i) == 1)
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f64, usize, usize, String)> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token_type(i) != 1 {
            continue;
        }
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push((
                    scores.get(i).copied().unwrap_or(0.0),
                    l,
                    r,
                    format!("{left} {right}"),
                ));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|m| m.3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::gguf::metadata_only;
    use gguf_rs_lib::format::metadata::{MetadataArray, MetadataValue};
    use gguf_rs_lib::format::types::GGUFValueType;

    /// A word-level `tokenizer.json` over `w0 … w{n-1}` with `extra` fields set.
    fn word_level(n: usize, extra: Value) -> Vec<u8> {
        let vocab: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("w{i}"), json!(i))).collect();
        let mut spec = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
        });
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec.to_string().into_bytes()
    }

    #[test]
    fn padding_and_truncation_of_tokenizer_json_are_switched_off() {
        let bytes = word_level(
            8,
            json!({
                "padding": {"strategy": {"Fixed": 1000}, "direction": "Right",
                            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0,
                            "pad_token": "w0"},
                "truncation": {"direction": "Right", "max_length": 1,
                               "strategy": "LongestFirst", "stride": 0}
            }),
        );
        let tokenizer = Tokenizer::from_bytes(&bytes, "t.json", None, vec![], false).unwrap();
        assert_eq!(tokenizer.encode("w1 w2 w3", false).unwrap(), [1, 2, 3]);
    }

    /// Malformed JSON inside `"decoder"` made tokenizers 0.23 panic (found by
    /// `tests/tests/fuzz.rs`); it is a load error naming the file.
    #[test]
    fn malformed_decoder_json_is_an_error_not_a_panic() {
        let good = String::from_utf8(word_level(8, json!({"decoder": {"type": "Fuse"}}))).unwrap();
        let at = good.find("\"decoder\"").unwrap() + "\"decoder\":".len();
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for bad in [
            format!("{}{{\"type\": ", &good[..at]),
            format!("{}{{\"type\" \"Fuse\"}}{}", &good[..at], &good[at + 15..]),
            format!("{}{deep}{}", &good[..at], &good[at + 15..]),
        ] {
            let e = Tokenizer::from_bytes(bad.as_bytes(), "m/tokenizer.json", None, vec![], false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("m/tokenizer.json"), "{e}");
        }
        Tokenizer::from_bytes(good.as_bytes(), "t.json", None, vec![], false).unwrap();
    }

    /// A BPE merge whose second token lacks the `continuing_subword_prefix` made tokenizers
    /// 0.23 panic (found by `tests/tests/fuzz.rs`); it is a load error.
    #[test]
    fn bpe_merges_without_the_subword_prefix_are_an_error_not_a_panic() {
        let bpe = |merges: Value| {
            json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": null, "pre_tokenizer": null, "post_processor": null,
                "decoder": null, "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": "▁", "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": {"a": 0, "b": 1, "▁b": 2, "ab": 3}, "merges": merges}
            })
            .to_string()
        };
        for merges in [json!([["a", "b"]]), json!(["a b"])] {
            let e = Tokenizer::from_bytes(bpe(merges).as_bytes(), "m/t.json", None, vec![], false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("continuing_subword_prefix"), "{e}");
        }
        Tokenizer::from_bytes(
            bpe(json!([["a", "▁b"]])).as_bytes(),
            "t.json",
            None,
            vec![],
            false,
        )
        .unwrap();
    }

    #[test]
    fn bos_and_eos_ids_outside_the_vocabulary_are_load_errors() {
        let bytes = word_level(8, json!({}));
        let error = |bos, eos| {
            Tokenizer::from_bytes(&bytes, "m/tokenizer.json", bos, eos, true)
                .unwrap_err()
                .to_string()
        };
        let e = error(Some(8), vec![2]);
        assert!(
            e.contains("m/tokenizer.json")
                && e.contains("bos_token_id = 8 is not in the vocabulary"),
            "{e}"
        );
        let e = error(Some(1), vec![2, u32::MAX]);
        assert!(e.contains("eos_token_id = 4294967295"), "{e}");
        Tokenizer::from_bytes(&bytes, "t.json", Some(1), vec![7], true).unwrap();
    }

    fn strings(values: &[&str]) -> MetadataValue {
        let values = values.iter().map(|s| MetadataValue::String(s.to_string()));
        let array = MetadataArray::new(GGUFValueType::String, values.collect()).unwrap();
        MetadataValue::Array(Box::new(array))
    }

    fn gguf_tokenizer(edits: Vec<(&str, MetadataValue)>) -> Result<Tokenizer> {
        let gguf = GgufFile::from_bytes(metadata_only(edits), "t.gguf")?;
        Tokenizer::from_gguf(&gguf)
    }

    #[test]
    fn gguf_tokens_are_bounded_and_special_ids_checked() {
        let long = "a".repeat(Tokenizer::MAX_TOKEN_BYTES + 1);
        let scores = MetadataArray::new(
            GGUFValueType::F32,
            (0..5).map(|i| MetadataValue::F32(-i as f32)).collect(),
        )
        .unwrap();
        let spm = |tokens: &[&str]| {
            vec![
                (
                    "tokenizer.ggml.model",
                    MetadataValue::String("llama".into()),
                ),
                ("tokenizer.ggml.tokens", strings(tokens)),
                (
                    "tokenizer.ggml.scores",
                    MetadataValue::Array(Box::new(scores.clone())),
                ),
            ]
        };
        gguf_tokenizer(spm(&["<unk>", "<s>", "</s>", "a", "aa"])).unwrap();
        let e = gguf_tokenizer(spm(&["<unk>", "<s>", "</s>", "a", &long]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.gguf") && e.contains("tokenizer.ggml.tokens[4] is 1025 bytes long"),
            "{e}"
        );
        let mut edits = spm(&["<unk>", "<s>", "</s>", "a", "aa"]);
        edits.push(("tokenizer.ggml.eos_token_id", MetadataValue::U32(5)));
        let e = gguf_tokenizer(edits).unwrap_err().to_string();
        assert!(
            e.contains("t.gguf")
                && e.contains(
                    "tokenizer.ggml.eos_token_id = 5 is not in the vocabulary (5 tokens)"
                ),
            "{e}"
        );
    }
}

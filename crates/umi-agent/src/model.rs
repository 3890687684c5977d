//! Llama models (`umi-model`) as the agent's [`Generator`]: one model shared by every role, one
//! per role (the paper's set-up), or one backbone with a LoRA adapter set per role (GLPFT's
//! local stage as adapters: about one model's memory instead of three).

use std::rc::Rc;

use umi_data::{Role, RoleMap};
use umi_model::{
    AdapterSet, GenerationConfig, Llama, LoadedModel, PrefixCache, Progress, RaggedBatch,
    generate_cached, generate_many, merge_lora, next_token_logits,
};

use crate::agent::AgentEvent;
use crate::generator::{Generator, GeneratorError, PromptLength};

/// Which weights serve which role.
enum RoleModels {
    /// A model per role (the same `Rc` when shared).
    Models(RoleMap<Rc<LoadedModel>>),
    /// One backbone; before a role generates, its adapters are swapped in.
    Adapters {
        backbone: Box<LoadedModel>,
        /// Planner (and backbone in single-LLM mode), caller, summarizer.
        sets: RoleMap<AdapterSet>,
        /// The role whose adapters are installed now ([`Role::Planner`] for the backbone's).
        active: Option<Role>,
        /// `Some(base)`: each role's adapters are folded into a fresh copy of `base`'s
        /// projections when the role takes its turn ([`LlamaGenerator::set_merge_adapters`]);
        /// `None`: they are attached and run beside the base products.
        merged_from: Option<Box<Llama>>,
    },
}

/// The model work a [`LlamaGenerator`] did since its counters were last taken
/// ([`LlamaGenerator::take_usage`]): what a decision costs, in the quantities of
/// psrlm-design.md §6's cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens run through the model (prefill); tokens taken from a prefix cache are not
    /// counted, and a prompt shared by a batch counts once.
    pub prefilled_tokens: usize,
    /// Prompt tokens whose keys and values came from a prefix cache instead of a prefill.
    pub cached_tokens: usize,
    /// Tokens sampled, every sequence of a batch counted (an EOS token counts).
    pub generated_tokens: usize,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prefilled_tokens += other.prefilled_tokens;
        self.cached_tokens += other.cached_tokens;
        self.generated_tokens += other.generated_tokens;
    }
}

impl Usage {
    /// What one [`umi_model::generate_cached`] call cost.
    fn of(output: &umi_model::GenerationOutput) -> Self {
        Self {
            prefilled_tokens: output.prompt_tokens - output.cached_tokens,
            cached_tokens: output.cached_tokens,
            generated_tokens: output.tokens.len(),
        }
    }
}

/// The most bytes of projection weights (`Llama::projection_bytes`) for which role adapters
/// are merged by default on a GPU ([`LlamaGenerator::set_merge_adapters`]): merging keeps a
/// second copy of them, and WebGPU tells nothing of the memory left. 1 GiB.
pub const MERGE_AUTO_MAX_BYTES: usize = 1 << 30;

/// Generates each role's text with a loaded model.
pub struct LlamaGenerator {
    models: RoleModels,
    /// Decoding settings (greedy by default, as α-UMi evaluates).
    pub config: GenerationConfig,
    /// Wrap α-UMi prompts as a user turn of the model's chat template: right for zero-shot
    /// instruct models; GLPFT-trained models expect the raw prompt (set `false`).
    pub use_chat_template: bool,
    /// Prompts longer than this many tokens keep only their last ones (the reference's
    /// `max_input_length`, 3750 in GLPFT's README); `None`: the model's context minus
    /// `max_new_tokens`, which always applies.
    pub max_input_tokens: Option<usize>,
    /// Per role slot (planner/backbone, caller, summarizer): the keys and values of the slot's
    /// last prompts, so the next prompt prefills only what it adds (the shared tool
    /// documentation and the conversation so far are computed once), also when several
    /// trajectories are decided at once ([`crate::Batcher`]).
    prefixes: RoleMap<PrefixCache>,
    /// No batching and no prefix reuse: every prompt is prefilled whole and the continuations
    /// of [`LlamaGenerator::generate_many`] are decoded one after another — the path before
    /// batched and prefix-shared generation, kept to measure what those save (`umi reward
    /// pairs --plain`). Texts are the same up to float rounding.
    pub plain: bool,
    usage: Usage,
}

impl LlamaGenerator {
    /// One model for all roles (also used as the backbone in single-LLM mode).
    pub fn shared(model: LoadedModel, config: GenerationConfig) -> Self {
        let model = Rc::new(model);
        Self::per_role(model.clone(), model.clone(), model, config)
    }

    /// A model per role; the planner also serves as the backbone in single-LLM mode.
    pub fn per_role(
        planner: Rc<LoadedModel>,
        caller: Rc<LoadedModel>,
        summarizer: Rc<LoadedModel>,
        config: GenerationConfig,
    ) -> Self {
        Self::new(
            RoleModels::Models(RoleMap::new(planner, caller, summarizer)),
            config,
        )
    }

    /// One backbone for every role, each role with its own LoRA adapters (e.g. GLPFT's local
    /// stage trained with `--lora`; an empty [`AdapterSet`] runs the backbone as it is). The
    /// planner's adapters also serve as the backbone in single-LLM mode. Swapping shares the
    /// adapters' tensors: nothing is copied. On a GPU with f32 or f16 weights the adapters are
    /// folded into the projections at each swap ([`LlamaGenerator::set_merge_adapters`]).
    pub fn with_adapters(
        backbone: LoadedModel,
        planner: AdapterSet,
        caller: AdapterSet,
        summarizer: AdapterSet,
        config: GenerationConfig,
    ) -> Self {
        let merge = backbone.model.is_on_gpu()
            && !backbone.model.is_quantized()
            && backbone.model.projection_bytes() <= MERGE_AUTO_MAX_BYTES;
        let mut generator = Self::new(
            RoleModels::Adapters {
                backbone: Box::new(backbone),
                sets: RoleMap::new(planner, caller, summarizer),
                active: None,
                merged_from: None,
            },
            config,
        );
        generator.set_merge_adapters(merge);
        generator
    }

    /// Whether each role's LoRA adapters are folded into the backbone's projections when the
    /// role takes its turn (`W_role = W + s·A·B`, computed from the untouched base weights at
    /// every swap, so nothing drifts and adapters trained in between are picked up), instead
    /// of running attached (`x·W + s·(x·A)·B`).
    ///
    /// Merged, a decode step costs what the base model's does: on wgpu an attached adapter's
    /// two products and its scaled sum are about 40 % of a decode step's kernel launches
    /// (SmolLM2 on lavapipe: 1,476 per token with a role adapter, 846 without;
    /// BENCHMARKS.md), and on a GPU or in a browser the launches are what a decode step's time
    /// goes to. The price: a swap runs one product and one sum per adapted projection (a few
    /// hundred launches, less than one decode step saves), and the merged projections are a
    /// second copy of those weights in memory while the base stays. The values differ from
    /// the attached form by rounding only (`W + s·A·B` summed in f32; held in f16 again for
    /// f16 weights).
    ///
    /// The default ([`LlamaGenerator::with_adapters`], [`LlamaGenerator::for_roles`]): merged
    /// on a GPU backend with f32 or f16 weights whose projections take at most
    /// [`MERGE_AUTO_MAX_BYTES`] (SmolLM2-135M: 0.4 GB in f32; TinyLlama-1.1B's 2.1 GB in f16
    /// would need as much again on a browser's GPU, which reports no memory total, so it
    /// stays attached); attached on the CPU, where the quantized
    /// weights would have to be quantized again (EVAL.md: that second rounding cost the agent
    /// live pass rate) and attached adapters cost compute, not launches. Only the one-backbone
    /// set-up swaps; with a model per role this does nothing.
    pub fn set_merge_adapters(&mut self, merge: bool) {
        if let RoleModels::Adapters {
            backbone,
            active,
            merged_from,
            ..
        } = &mut self.models
        {
            if merge == merged_from.is_some() {
                return;
            }
            // back to the base with no adapters; the next turn installs its role's
            let base = match merged_from.take() {
                Some(original) => *original,
                None => {
                    let mut base = backbone.model.clone();
                    base.take_adapters();
                    base
                }
            };
            backbone.model = base.clone();
            *merged_from = merge.then(|| Box::new(base));
            *active = None;
            // cached prefixes were computed with the other form's roundings
            self.clear_prefix_caches();
        }
    }

    /// Whether role adapters are merged at each swap ([`LlamaGenerator::set_merge_adapters`]).
    pub fn merges_adapters(&self) -> bool {
        matches!(
            &self.models,
            RoleModels::Adapters {
                merged_from: Some(_),
                ..
            }
        )
    }

    /// The agent's generator for planner, caller and summarizer `models` (the same `Rc` when
    /// one model plays several roles) with each role's `adapters` (an empty set: none), as
    /// `umi run`, `umi eval` and the web app select them:
    /// - no adapters: [`LlamaGenerator::per_role`];
    /// - one model for every role: it runs as one backbone whose adapters are swapped per role
    ///   ([`LlamaGenerator::with_adapters`], about one model's memory);
    /// - distinct models: each gets its own role's adapters installed on a copy that shares
    ///   its weights.
    pub fn for_roles(
        models: RoleMap<Rc<LoadedModel>>,
        adapters: RoleMap<AdapterSet>,
        config: GenerationConfig,
    ) -> Self {
        let [planner, caller, summarizer] = models.into_array();
        if adapters.iter().all(|(_, a)| a.is_empty()) {
            return Self::per_role(planner, caller, summarizer, config);
        }
        let [a_planner, a_caller, a_summarizer] = adapters.into_array();
        if Rc::ptr_eq(&planner, &caller) && Rc::ptr_eq(&planner, &summarizer) {
            return Self::with_adapters(share(&planner), a_planner, a_caller, a_summarizer, config);
        }
        let adapted = |model: Rc<LoadedModel>, set: AdapterSet| {
            if set.is_empty() {
                model
            } else {
                let mut copy = share(&model);
                copy.model.set_adapters(&set);
                Rc::new(copy)
            }
        };
        Self::per_role(
            adapted(planner, a_planner),
            adapted(caller, a_caller),
            adapted(summarizer, a_summarizer),
            config,
        )
    }

    fn new(models: RoleModels, config: GenerationConfig) -> Self {
        Self {
            models,
            config,
            use_chat_template: true,
            max_input_tokens: None,
            prefixes: Default::default(),
            plain: false,
            usage: Usage::default(),
        }
    }

    /// The work done since the last call (or since the generator was made), and counting
    /// starts again from zero.
    pub fn take_usage(&mut self) -> Usage {
        std::mem::take(&mut self.usage)
    }

    /// In [`LlamaGenerator::plain`] mode, forgets `role`'s cached prefix before it is used.
    fn forget_prefix_if_plain(&mut self, role: Role) {
        if self.plain {
            self.prefixes.get_mut(role).clear();
        }
    }

    /// Forgets the cached prompt prefixes (their bounds stay); needed only if the weights
    /// behind a role change.
    pub fn clear_prefix_caches(&mut self) {
        let RoleMap {
            planner,
            caller,
            summarizer,
        } = &mut self.prefixes;
        for cache in [planner, caller, summarizer] {
            cache.clear();
        }
    }

    /// Bounds each role's prefix cache to `entries` prompts and `bytes` bytes of keys and
    /// values (by default [`PrefixCache::DEFAULT_MAX_ENTRIES`] and
    /// [`PrefixCache::DEFAULT_MAX_BYTES`]; one query at a time needs 2 prompts per role, since
    /// a role's next prompt extends its last). Forgets what is cached.
    pub fn set_prefix_cache_limits(&mut self, entries: usize, bytes: usize) {
        self.prefixes = RoleMap::from(std::array::from_fn(|_| {
            PrefixCache::with_limits(entries, bytes)
        }));
    }

    /// The log-probabilities `(ℓ_a, ℓ_b)` of the first tokens where `prompt` followed by
    /// `a` and `prompt` followed by `b` differ, as `role`'s model (its adapters, its prompt
    /// form) reads them: how a judge's verdict is read without decoding (`a = "[[A]]"`,
    /// `b = "[[B]]"`; psrlm-design.md §2.5.2). Both texts are tokenized whole (a boundary can
    /// tokenize differently when split); the common part is run once and kept in the role's
    /// prefix cache, so a series of judge prompts that share their beginning (tool list,
    /// history) prefills only what differs. A common part longer than the prompt budget keeps
    /// its end.
    ///
    /// # Errors
    ///
    /// When tokenizing fails, the two texts give the same tokens, or the model fails.
    pub async fn choice_logprobs(
        &mut self,
        role: Role,
        prompt: &str,
        a: &str,
        b: &str,
    ) -> Result<(f64, f64), GeneratorError> {
        let fail = |message: String| GeneratorError { role, message };
        let ids_a = self.tokens(role, prompt, a)?;
        let ids_b = self.tokens(role, prompt, b)?;
        // Nothing is generated: the whole context is the budget.
        let budget = self.models.for_role(role).model.max_positions();
        let k = ids_a.iter().zip(&ids_b).take_while(|(x, y)| x == y).count();
        if k == 0 || k >= ids_a.len().min(ids_b.len()) {
            return Err(fail(format!(
                "{a:?} and {b:?} after the prompt do not differ at a token after a common start"
            )));
        }
        let (token_a, token_b) = (ids_a[k] as usize, ids_b[k] as usize);
        let start = k.saturating_sub(budget);
        let context = &ids_a[start..k];
        self.forget_prefix_if_plain(role);
        let loaded = self.models.for_role(role);
        let prefix = self.prefixes.get_mut(role);
        let (cached, mut cache) = prefix.take_prefix(context, &loaded.model);
        let logits = next_token_logits(&loaded.model, &context[cached..], &mut cache)
            .await
            .map_err(|e| fail(e.to_string()))?;
        prefix.store(context, &cache);
        self.usage += Usage {
            prefilled_tokens: context.len() - cached,
            cached_tokens: cached,
            generated_tokens: 0,
        };
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let at = |t: usize| {
            logits
                .get(t)
                .map(|&l| l as f64 - lse)
                .ok_or_else(|| fail(format!("token {t} is outside the vocabulary")))
        };
        Ok((at(token_a)?, at(token_b)?))
    }

    /// Several continuations of one `role` prompt decoded together as a batch
    /// ([`umi_model::generate_many`]): `configs[i]` (its seed, temperature, top-p and
    /// `max_new_tokens`) with `stop` added gives continuation `i`, which equals what
    /// [`Generator::generate`] gives with that config. The prompt is truncated as there, with
    /// room left for the longest continuation, and prefilled once through the role's prefix
    /// cache.
    ///
    /// # Errors
    ///
    /// When the prompt cannot be encoded or a config is invalid.
    pub async fn generate_many(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        configs: &[GenerationConfig],
    ) -> Result<Vec<String>, GeneratorError> {
        let longest = configs.iter().map(|c| c.max_new_tokens).max().unwrap_or(0);
        let ids = self.truncated_prompt(role, prompt, longest)?;
        let configs: Vec<GenerationConfig> = configs
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.stop_strings.extend(stop.iter().cloned());
                c
            })
            .collect();
        let fail = |e: umi_model::Error| GeneratorError {
            role,
            message: e.to_string(),
        };
        if self.plain {
            let mut texts = Vec::with_capacity(configs.len());
            for config in &configs {
                self.forget_prefix_if_plain(role);
                let loaded = self.models.for_role(role);
                let output = generate_cached(
                    &loaded.model,
                    &loaded.tokenizer,
                    &ids,
                    config,
                    self.prefixes.get_mut(role),
                    |_| true,
                )
                .await
                .map_err(fail)?;
                self.usage += Usage::of(&output);
                texts.push(output.text);
            }
            return Ok(texts);
        }
        let loaded = self.models.for_role(role);
        let outputs = generate_many(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            &configs,
            self.prefixes.get_mut(role),
        )
        .await
        .map_err(fail)?;
        if let Some(first) = outputs.first() {
            // one prefill for the whole batch
            self.usage += Usage {
                generated_tokens: 0,
                ..Usage::of(first)
            };
        }
        for output in &outputs {
            self.usage.generated_tokens += output.tokens.len();
        }
        Ok(outputs.into_iter().map(|o| o.text).collect())
    }

    /// The text `role`'s model reads for `prompt`: wrapped as a user turn of its chat template
    /// when [`LlamaGenerator::use_chat_template`] is set, else `prompt` itself.
    pub fn prompt_text(&mut self, role: Role, prompt: &str) -> String {
        if self.use_chat_template {
            self.models.for_role(role).chat_template.user_prompt(prompt)
        } else {
            prompt.to_string()
        }
    }

    /// The token ids of `prompt` with `answer` written after it (after the chat template's
    /// assistant header, when the template is used), untruncated.
    fn tokens(
        &mut self,
        role: Role,
        prompt: &str,
        answer: &str,
    ) -> Result<Vec<u32>, GeneratorError> {
        let loaded = self.models.for_role(role);
        let mut text = if self.use_chat_template {
            loaded.chat_template.user_prompt(prompt)
        } else {
            prompt.to_string()
        };
        text.push_str(answer);
        loaded
            .tokenizer
            .encode(&text, true)
            .map_err(|e| GeneratorError {
                role,
                message: e.to_string(),
            })
    }

    /// The token ids of `prompt` as `role`'s model receives it (in its chat template when
    /// [`LlamaGenerator::use_chat_template`] is set), and the most tokens it keeps with room
    /// left for `max_new_tokens`.
    fn encode(
        &mut self,
        role: Role,
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<(Vec<u32>, usize), GeneratorError> {
        let ids = self.tokens(role, prompt, "")?;
        let loaded = self.models.for_role(role);
        let fail = |message: String| GeneratorError { role, message };
        let budget = loaded.model.max_positions().saturating_sub(max_new_tokens);
        if budget == 0 {
            return Err(fail(format!(
                "max_new_tokens = {max_new_tokens} leaves no room for a prompt in a context of {}",
                loaded.model.max_positions()
            )));
        }
        let budget = self
            .max_input_tokens
            .map_or(budget, |m| budget.min(m.max(1)));
        Ok((ids, budget))
    }

    /// [`LlamaGenerator::encode`]'s ids cut to their budget from the left, as the reference
    /// collator does (the end of the prompt is kept).
    fn truncated_prompt(
        &mut self,
        role: Role,
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>, GeneratorError> {
        let (mut ids, budget) = self.encode(role, prompt, max_new_tokens)?;
        if ids.len() > budget {
            ids.drain(..ids.len() - budget);
        }
        Ok(ids)
    }
}

/// Continuous batching of the agent's requests (`crate::batched`): a request joins its role's
/// running batch, and a step advances that batch by one token.
impl LlamaGenerator {
    /// Prefills `prompt` as [`Generator::generate`] would (its truncation, prompt form,
    /// prefix cache and stop strings) and adds it to `batch`, `role`'s batch, as `key`.
    pub(crate) async fn join_batch(
        &mut self,
        batch: &mut RaggedBatch<usize>,
        key: usize,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<(), GeneratorError> {
        let ids = self.truncated_prompt(role, prompt, self.config.max_new_tokens)?;
        self.forget_prefix_if_plain(role);
        let mut config = self.config.clone();
        config.stop_strings.extend(stop.iter().cloned());
        let loaded = self.models.for_role(role);
        batch
            .join(
                &loaded.model,
                key,
                &ids,
                config,
                self.prefixes.get_mut(role),
            )
            .await
            .map_err(|e| GeneratorError {
                role,
                message: e.to_string(),
            })
    }

    /// One decode step of `role`'s `batch`: the keys and texts of the requests that finished.
    pub(crate) async fn step_batch(
        &mut self,
        batch: &mut RaggedBatch<usize>,
        role: Role,
    ) -> Result<Vec<(usize, String)>, GeneratorError> {
        let loaded = self.models.for_role(role);
        let finished = batch
            .step(&loaded.model, &loaded.tokenizer)
            .await
            .map_err(|e| GeneratorError {
                role,
                message: e.to_string(),
            })?;
        Ok(finished
            .into_iter()
            .map(|(key, output)| {
                self.usage += Usage::of(&output);
                (key, output.text)
            })
            .collect())
    }
}

/// A copy of `model` sharing its weights (burn tensors are reference-counted).
fn share(model: &LoadedModel) -> LoadedModel {
    LoadedModel {
        model: model.model.clone(),
        tokenizer: model.tokenizer.clone(),
        chat_template: model.chat_template.clone(),
        origin: model.origin.clone(),
    }
}

impl RoleModels {
    /// The model that generates as `role`, with that role's adapters installed.
    fn for_role(&mut self, role: Role) -> &LoadedModel {
        // the backbone plays in the planner's slot
        let role = if role == Role::Backbone {
            Role::Planner
        } else {
            role
        };
        match self {
            RoleModels::Models(models) => models.get(role),
            RoleModels::Adapters {
                backbone,
                sets,
                active,
                merged_from,
            } => {
                if *active != Some(role) {
                    match merged_from {
                        Some(base) => {
                            // the last role's merged projections go before the next's are made
                            backbone.model = (**base).clone();
                            backbone.model.set_adapters(sets.get(role));
                            merge_lora(&mut backbone.model);
                        }
                        None => backbone.model.set_adapters(sets.get(role)),
                    }
                    *active = Some(role);
                }
                backbone
            }
        }
    }
}

impl Generator for LlamaGenerator {
    async fn generate(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
    ) -> Result<String, GeneratorError> {
        self.generate_streaming(role, prompt, stop, &mut |_| {})
            .await
    }

    /// Reports an [`AgentEvent::Prefill`] before and after every prefill chunk
    /// ([`GenerationConfig::prefill_chunk`]) and an [`AgentEvent::Text`] per token.
    async fn generate_streaming(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        on_event: &mut dyn FnMut(&AgentEvent),
    ) -> Result<String, GeneratorError> {
        let ids = self.truncated_prompt(role, prompt, self.config.max_new_tokens)?;
        self.forget_prefix_if_plain(role);
        let loaded = self.models.for_role(role);
        let fail = |message: String| GeneratorError { role, message };
        let mut config = self.config.clone();
        config.stop_strings.extend(stop.iter().cloned());
        let output = generate_cached(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            &config,
            self.prefixes.get_mut(role),
            |progress| {
                on_event(&match progress {
                    Progress::Token { text, .. } => AgentEvent::Text {
                        role,
                        delta: text.to_string(),
                    },
                    Progress::Prefill { done, total } => AgentEvent::Prefill { role, done, total },
                });
                true
            },
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        self.usage += Usage::of(&output);
        Ok(output.text)
    }

    fn prompt_length(
        &mut self,
        role: Role,
        prompt: &str,
    ) -> Result<Option<PromptLength>, GeneratorError> {
        let (ids, budget) = self.encode(role, prompt, self.config.max_new_tokens)?;
        Ok(Some(PromptLength {
            tokens: ids.len(),
            budget,
        }))
    }
}

//! Which weights play planner, caller and summarizer: the model flags `umi run` and `umi eval`
//! share, and the cache that loads a path named for several roles once.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use umi_agent::LlamaGenerator;
use umi_data::RoleMap;
use umi_model::{
    AdapterSet, Device, GenerationConfig, LoadedModel, QFormat, WeightDtype, load_model, load_peft,
    merge_lora, read_peft,
};

use crate::DEFAULT_MODEL;

/// The role models: one model for all, one per role (the paper's set-up), or one backbone with
/// a PEFT LoRA adapter per role (GLPFT's local stage trained with `umi train local --lora`).
#[derive(clap::Args, Debug, Clone)]
pub struct RoleModelArgs {
    /// Model for every role, or the backbone the --*-adapter flags adapt (a .gguf file or a
    /// Hugging Face folder).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Planner (or, in single mode, backbone) model; default --model.
    #[arg(long)]
    pub planner: Option<PathBuf>,
    /// Caller model; default --model.
    #[arg(long)]
    pub caller: Option<PathBuf>,
    /// Summarizer model; default --model.
    #[arg(long)]
    pub summarizer: Option<PathBuf>,
    /// A PEFT adapter merged into --model first: GLPFT's global stage, when the role adapters
    /// were trained on top of it (`umi train local --init-adapter`).
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    /// PEFT LoRA adapter folder for the planner, on --model (e.g. runs/planner/final/adapter).
    #[arg(long)]
    pub planner_adapter: Option<PathBuf>,
    /// PEFT LoRA adapter folder for the caller, on --model.
    #[arg(long)]
    pub caller_adapter: Option<PathBuf>,
    /// PEFT LoRA adapter folder for the summarizer, on --model.
    #[arg(long)]
    pub summarizer_adapter: Option<PathBuf>,
    /// Send α-UMi prompts raw (GLPFT-trained models) instead of as a chat-template user turn
    /// (zero-shot instruct models).
    #[arg(long)]
    pub raw_prompts: bool,
    /// Run --model as it is (zero-shot, chat template) instead of the α-UMi agent umi ships
    /// for the default model (`assets/agent/`), which plays every role that has no
    /// --*-adapter of its own when no other model is given.
    #[arg(long)]
    pub zero_shot: bool,
    /// Weight format for inference: f32 (as loaded), q8_0 (8-bit weights and activations in
    /// blocks of 32, about 2 % RMS off the f32 logits; CPU backend only), q4_1 (4-bit
    /// projection weights with a scale and a minimum per 32, the token embedding and tied LM
    /// head in Q8_0, as llama.cpp's Q4_1 files hold them; faster, further off the f32 logits;
    /// CPU backend only), f16 (the embedding, projections and LM head held in f16: half the
    /// memory and bytes read of f32; on the CPU multiplied in f32 row by row, on a GPU with
    /// shader-f16 in f16; an f16 or bf16 file's own precision, or f32 rounded),
    /// or auto (f16 on the CPU backend, the precision at which the shipped agent passes the
    /// most live tasks in EVAL.md; f32 on a GPU). Adapters stay f32.
    /// Default: auto for `umi run`, f32 for the evaluations and `umi reward` (the reference
    /// numbers are f32).
    #[arg(long, value_enum)]
    pub quant: Option<Quant>,
    /// How role adapters on one backbone run: merged (folded into a copy of the backbone's
    /// projections at each role's turn: a decode step then costs the base model's, on a GPU
    /// about 40 % fewer kernel launches), attached (run beside the base products, the form
    /// they were trained in), or auto (merged on a GPU backend with f32 or f16 weights up to
    /// 1 GiB of projections, attached on the CPU backend and for larger models).
    #[arg(long, value_enum, default_value_t = MergeAdapters::Auto)]
    pub merge_adapters: MergeAdapters,
    /// How keys and values are cached on the CPU backend: auto (f16 with quantized or f16
    /// weights, as llama.cpp caches them, f32 with f32 weights), f16 (half the bytes a decode
    /// step's attention reads) or f32.
    #[arg(long, value_enum, default_value_t = KvCacheDtype::Auto)]
    pub kv_cache: KvCacheDtype,
}

/// How keys and values are cached (`--kv-cache`; [`umi_model::Llama::kv_cache_f16`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheDtype {
    /// f16 with quantized (Q8_0, Q4_1) or f16 weights, f32 with f32 weights.
    #[default]
    Auto,
    /// f16 whatever the weights.
    F16,
    /// f32 whatever the weights.
    F32,
}

impl KvCacheDtype {
    /// Sets `loaded`'s cache precision where this is not [`KvCacheDtype::Auto`] (which keeps
    /// what loading chose), saying so when it changes.
    pub fn apply(self, loaded: &mut LoadedModel) {
        let f16 = match self {
            KvCacheDtype::Auto => return,
            KvCacheDtype::F16 => true,
            KvCacheDtype::F32 => false,
        };
        if loaded.model.kv_cache_f16 != f16 {
            loaded.model.kv_cache_f16 = f16;
            eprintln!(
                "keys and values cached in {} instead (--kv-cache)",
                if f16 { "f16" } else { "f32" }
            );
        }
    }
}

/// How role adapters run (`--merge-adapters`; `umi_agent::LlamaGenerator::set_merge_adapters`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeAdapters {
    /// Merged on a GPU backend with f32 or f16 weights up to `umi_agent::MERGE_AUTO_MAX_BYTES`
    /// of projections, attached on the CPU backend and for larger models.
    #[default]
    Auto,
    /// Folded into the backbone's projections at each role's turn.
    Merged,
    /// Run beside the base products.
    Attached,
}

/// How weights are held for inference.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quant {
    /// As loaded (GGUF's quantized types are dequantized to f32 at load).
    #[default]
    F32,
    /// GGML's Q8_0 layout (`Llama::quantize`), multiplied on the CPU in 8-bit.
    #[value(name = "q8_0")]
    Q8_0,
    /// GGML's Q4_1 layout for the projections (`Llama::quantize`), the embedding in Q8_0.
    #[value(name = "q4_1")]
    Q4_1,
    /// f16 weights (`Llama::half`; the web app's choice where WebGPU has shader-f16).
    F16,
    /// f16 on the CPU backend (keys and values cached in f16 too), f32 on a GPU. On the CPU the
    /// shipped agent passes 82.0 % of the live test tasks with f16 (as with f32) against 78.5 %
    /// with Q8_0 and 79.5 % with Q4_1 (EVAL.md), at 0.6x Q8_0's decode speed.
    Auto,
}

impl Quant {
    /// The quantized format weights are held in on `device` (`None`: f32, or f16 where
    /// [`Quant::is_f16_on`]).
    ///
    /// # Errors
    ///
    /// A quantized format on a device other than the CPU.
    pub fn format_on(self, device: &Device) -> Result<Option<QFormat>> {
        let on_cpu = *device == Device::flex();
        let format = match self {
            Quant::F32 => return Ok(None),
            Quant::F16 | Quant::Auto => return Ok(None),
            Quant::Q8_0 => QFormat::Q8_0,
            Quant::Q4_1 => QFormat::Q4_1,
        };
        if !on_cpu {
            bail!(
                "--quant {} runs on the CPU backend only (pass --backend cpu)",
                format.name().to_lowercase()
            );
        }
        Ok(Some(format))
    }

    /// Whether weights are held in f16 on `device`: [`Quant::F16`], or [`Quant::Auto`] on the
    /// CPU backend.
    pub fn is_f16_on(self, device: &Device) -> bool {
        self == Quant::F16 || (self == Quant::Auto && *device == Device::flex())
    }

    /// Puts `loaded` (loaded in f32, e.g. to merge an adapter first) in this format.
    ///
    /// # Errors
    ///
    /// As [`Quant::format_on`].
    pub fn apply(self, loaded: &mut LoadedModel, device: &Device) -> Result<()> {
        if let Some(format) = self.format_on(device)? {
            loaded.model.quantize(format);
            report_quantized(loaded, format);
        } else if self.is_f16_on(device) {
            loaded.model.half();
            report_half(loaded);
        }
        Ok(())
    }

    /// Loads the model at `path` in this format: quantized, each weight is quantized as it is
    /// read, so the f32 model is never held (see [`load_with_progress`]).
    ///
    /// # Errors
    ///
    /// As [`Quant::format_on`] and [`load_with_progress`].
    pub fn load(self, path: &Path, device: &Device) -> Result<LoadedModel> {
        let format = self.format_on(device)?;
        let hold = match format {
            Some(format) => Hold::Quantized(format),
            None if self.is_f16_on(device) => Hold::Float(WeightDtype::F16),
            None => Hold::Float(WeightDtype::F32),
        };
        let mut loaded = load_with_progress_as(path, device, hold)?;
        match hold {
            Hold::Quantized(format) => report_quantized(&mut loaded, format),
            Hold::Float(WeightDtype::F16) => report_half(&mut loaded),
            Hold::Float(WeightDtype::F32) => {}
        }
        Ok(loaded)
    }
}

/// How [`load_with_progress_as`] holds the weights.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    Float(WeightDtype),
    Quantized(QFormat),
}

/// Says that `loaded` holds its weights in f16, and caches its keys and values in f16 too
/// ([`umi_model::Llama::kv_cache_f16`], CPU backend): the shipped agent passes the same live
/// tasks with an f16 cache as with an f32 one, about 10 % faster and 230 MB smaller (EVAL.md).
fn report_half(loaded: &mut LoadedModel) {
    loaded.model.kv_cache_f16 = true;
    let c = &loaded.model.config;
    eprintln!(
        "holding {} in f16: {:.0} MB of weights, keys and values cached in f16",
        loaded.origin,
        c.num_parameters() as f64 * 2.0 / 1e6
    );
}

/// Says what a quantized load holds, and turns on the f16 key/value cache that goes with
/// quantized inference ([`umi_model::Llama::kv_cache_f16`]).
fn report_quantized(loaded: &mut LoadedModel, format: QFormat) {
    loaded.model.kv_cache_f16 = true;
    let embedding = if format == QFormat::Q8_0 {
        ""
    } else {
        " (the token embedding in Q8_0)"
    };
    eprintln!(
        "holding {} in {}{embedding} for inference: {:.0} MB of quantized weights, keys and \
         values cached in f16",
        loaded.origin,
        format.name(),
        loaded.model.quantized_bytes() as f64 / 1e6
    );
}

/// Where the shipped α-UMi agent for the default model lives: one PEFT LoRA adapter per role
/// (see its README, the model card).
pub const SHIPPED_AGENT: &str = "assets/agent/smollm2-135m-instruct";

impl RoleModelArgs {
    /// These flags with the shipped agent filled in: when the multi-LLM agent (`multi`) runs
    /// on the default model alone (no per-role model, no `--init-adapter`, no `--zero-shot`)
    /// and `assets/agent/` holds the three role adapters, every role without its own
    /// `--*-adapter` gets the shipped one, with raw α-UMi prompts as they were trained (so
    /// `--caller-adapter runs/x` tries a new caller inside the shipped agent, rather than
    /// beside a zero-shot planner and summarizer). umi ships no single-LLM model, so single
    /// mode keeps the base model.
    pub fn or_shipped_agent(self, multi: bool) -> Self {
        self.or_agent_in(multi, Path::new(SHIPPED_AGENT))
    }

    /// [`RoleModelArgs::or_shipped_agent`] with the agent's folder `dir`.
    fn or_agent_in(mut self, multi: bool, dir: &Path) -> Self {
        let default_backbone = self.model == Path::new(DEFAULT_MODEL)
            && self.init_adapter.is_none()
            && self.models().iter().all(|m| m.is_none());
        if self.zero_shot || !default_backbone || !multi {
            return self;
        }
        let roles = ["planner", "caller", "summarizer"];
        if !roles
            .iter()
            .all(|r| dir.join(r).join("adapter_config.json").is_file())
        {
            return self;
        }
        let given = self.adapters().map(Option::is_some);
        if given.iter().all(|g| *g) {
            return self;
        }
        // the roles whose adapter was given (`true`) or not (`false`)
        let pick = |want: bool| -> Vec<&str> {
            roles
                .iter()
                .zip(given)
                .filter(|(_, g)| *g == want)
                .map(|(r, _)| *r)
                .collect()
        };
        let filled = pick(false);
        if filled.len() == 3 {
            eprintln!(
                "using the α-UMi agent shipped in {} (planner, caller and summarizer adapters on {DEFAULT_MODEL}; --zero-shot runs the base model alone)",
                dir.display()
            );
        } else {
            let kept = pick(true);
            eprintln!(
                "using the {} adapter{} of the α-UMi agent shipped in {} with the given {} adapter{}; prompts are sent raw, as umi trains adapters",
                filled.join(" and "),
                if filled.len() > 1 { "s" } else { "" },
                dir.display(),
                kept.join(" and "),
                if kept.len() > 1 { "s" } else { "" },
            );
        }
        for (slot, role) in [
            &mut self.planner_adapter,
            &mut self.caller_adapter,
            &mut self.summarizer_adapter,
        ]
        .into_iter()
        .zip(roles)
        {
            if slot.is_none() {
                *slot = Some(dir.join(role));
            }
        }
        self.raw_prompts = true;
        self
    }

    fn adapters(&self) -> [&Option<PathBuf>; 3] {
        [
            &self.planner_adapter,
            &self.caller_adapter,
            &self.summarizer_adapter,
        ]
    }

    fn models(&self) -> [&Option<PathBuf>; 3] {
        [&self.planner, &self.caller, &self.summarizer]
    }

    /// --model, with --init-adapter if any, as text.
    fn backbone_name(&self) -> String {
        match &self.init_adapter {
            Some(a) => format!("{} + {}", self.model.display(), a.display()),
            None => self.model.display().to_string(),
        }
    }

    /// --model loaded afresh, with --init-adapter merged into it.
    fn load_backbone(&self, cache: &mut ModelCache, device: &Device) -> Result<LoadedModel> {
        let quant = self.quant.unwrap_or_default();
        let Some(dir) = &self.init_adapter else {
            return cache.load_owned(&self.model, device, quant);
        };
        // merged into the f32 weights, quantized after
        let mut backbone = cache.load_owned(&self.model, device, Quant::F32)?;
        load_peft(&mut backbone.model, dir, device)
            .with_context(|| format!("loading the adapter {}", dir.display()))?;
        merge_lora(&mut backbone.model);
        quant.apply(&mut backbone, device)?;
        cache.kv_cache.apply(&mut backbone);
        Ok(backbone)
    }

    /// Planner, caller and summarizer as `path` or `path + adapter`, with ` (Q8_0)` or
    /// ` (Q4_1)` when quantized (run settings, labels).
    pub fn describe(&self) -> [String; 3] {
        let mut out: [String; 3] = Default::default();
        for (i, (model, adapter)) in self.models().into_iter().zip(self.adapters()).enumerate() {
            let model = match model {
                Some(m) => m.display().to_string(),
                None => self.backbone_name(),
            };
            out[i] = match adapter {
                Some(a) => format!("{model} + {}", a.display()),
                None => model,
            };
            match self.quant {
                Some(Quant::Q8_0) => out[i].push_str(" (Q8_0)"),
                Some(Quant::Q4_1) => out[i].push_str(" (Q4_1)"),
                Some(Quant::F16) => out[i].push_str(" (f16)"),
                Some(Quant::Auto) => out[i].push_str(" (f16 on the CPU)"),
                Some(Quant::F32) | None => {}
            }
            match self.kv_cache {
                KvCacheDtype::Auto => {}
                KvCacheDtype::F16 => out[i].push_str(" (KV cache f16)"),
                KvCacheDtype::F32 => out[i].push_str(" (KV cache f32)"),
            }
        }
        out
    }

    /// [`RoleModelArgs::generator`] as `umi eval` and `umi eval live` run it: greedy, at most
    /// `max_new_tokens` per generation, prompts cut to their last `max_input_tokens` tokens.
    ///
    /// # Errors
    ///
    /// As [`RoleModelArgs::generator`].
    pub fn eval_generator(
        &self,
        cache: &mut ModelCache,
        device: &Device,
        max_new_tokens: usize,
        max_input_tokens: usize,
    ) -> Result<LlamaGenerator> {
        let config = GenerationConfig {
            max_new_tokens,
            ..Default::default()
        };
        let mut generator = self.generator(cache, device, config)?;
        generator.max_input_tokens = Some(max_input_tokens);
        Ok(generator)
    }

    /// Loads the role models and returns the agent's generator for them.
    ///
    /// # Errors
    ///
    /// When a model or adapter cannot be loaded, or adapters are combined with per-role models
    /// (adapters always sit on --model).
    pub fn generator(
        &self,
        cache: &mut ModelCache,
        device: &Device,
        config: GenerationConfig,
    ) -> Result<LlamaGenerator> {
        cache.quant = self.quant.unwrap_or_default();
        cache.kv_cache = self.kv_cache;
        let mut generator = if self.adapters().iter().any(|a| a.is_some()) {
            if let Some(flag) = self
                .models()
                .iter()
                .zip(["--planner", "--caller", "--summarizer"])
                .find_map(|(m, flag)| m.is_some().then_some(flag))
            {
                bail!(
                    "{flag} cannot be combined with --*-adapter flags: adapters sit on the one backbone given by --model"
                );
            }
            let backbone = self.load_backbone(cache, device)?;
            let mut sets: [AdapterSet; 3] = Default::default();
            for (set, adapter) in sets.iter_mut().zip(self.adapters()) {
                if let Some(dir) = adapter {
                    let (config, adapters) = read_peft(&backbone.model, dir, device)
                        .with_context(|| format!("loading the adapter {}", dir.display()))?;
                    eprintln!(
                        "adapter {}: LoRA r={} alpha={} on {} projections",
                        dir.display(),
                        config.r,
                        config.lora_alpha,
                        adapters.len()
                    );
                    *set = adapters;
                }
            }
            let backbone = Rc::new(backbone);
            let models = RoleMap::new(backbone.clone(), backbone.clone(), backbone);
            LlamaGenerator::for_roles(models, RoleMap::from(sets), config)
        } else {
            let backbone = match &self.init_adapter {
                Some(_) => Rc::new(self.load_backbone(cache, device)?),
                None => cache.load(&self.model, device)?,
            };
            let [planner, caller, summarizer] = self.models().map(|m| match m {
                Some(path) => cache.load(path, device),
                None => Ok(backbone.clone()),
            });
            let models = RoleMap::new(planner?, caller?, summarizer?);
            LlamaGenerator::for_roles(models, RoleMap::default(), config)
        };
        match self.merge_adapters {
            MergeAdapters::Auto => {}
            MergeAdapters::Merged => generator.set_merge_adapters(true),
            MergeAdapters::Attached => generator.set_merge_adapters(false),
        }
        if generator.merges_adapters() {
            eprintln!("role adapters: merged into the backbone's projections at each role's turn");
        }
        generator.use_chat_template = !self.raw_prompts;
        Ok(generator)
    }
}

/// Loaded models by path: a path named for several roles is loaded once and shared.
#[derive(Default)]
pub struct ModelCache {
    models: std::collections::HashMap<PathBuf, Rc<LoadedModel>>,
    /// The format [`ModelCache::load`] puts models in.
    pub quant: Quant,
    /// How their keys and values are cached.
    pub kv_cache: KvCacheDtype,
}

impl ModelCache {
    /// The model at `path`, loading it on first use.
    pub fn load(&mut self, path: &Path, device: &Device) -> Result<Rc<LoadedModel>> {
        if let Some(m) = self.models.get(path) {
            return Ok(m.clone());
        }
        let m = Rc::new(self.load_owned(path, device, self.quant)?);
        self.models.insert(path.to_path_buf(), m.clone());
        Ok(m)
    }

    /// The model at `path` in format `quant`, loaded afresh (a backbone whose adapters will
    /// be swapped).
    pub fn load_owned(
        &mut self,
        path: &Path,
        device: &Device,
        quant: Quant,
    ) -> Result<LoadedModel> {
        if !path.exists() && path == Path::new(DEFAULT_MODEL) {
            bail!(
                "the default model {DEFAULT_MODEL} is not installed; run `scripts/setup.sh` first (or pass --model PATH)"
            );
        }
        let mut loaded = quant.load(path, device)?;
        self.kv_cache.apply(&mut loaded);
        Ok(loaded)
    }
}

/// Loads the model at `path`, showing on a terminal a spinner with the file size and the time
/// so far (reading, dequantizing and uploading are one call), then one line with what loaded.
pub fn load_with_progress(path: &Path, device: &Device) -> Result<LoadedModel> {
    load_with_progress_as(path, device, Hold::Float(WeightDtype::F32))
}

/// [`load_with_progress`], held as `hold` says ([`umi_model::load_model_quantized`],
/// [`umi_model::load_model_in`]).
fn load_with_progress_as(path: &Path, device: &Device, hold: Hold) -> Result<LoadedModel> {
    let size_mb = std::fs::metadata(path)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} loading {msg} [{elapsed}]")
            .expect("static template"),
    );
    let what = if path.is_file() {
        format!("{} ({size_mb:.0} MB)", path.display())
    } else {
        path.display().to_string()
    };
    spinner.set_message(what);
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let start = std::time::Instant::now();
    let loaded = match hold {
        Hold::Quantized(format) => umi_model::load_model_quantized(path, device, format),
        Hold::Float(WeightDtype::F32) => load_model(path, device),
        Hold::Float(dtype) => umi_model::load_model_in(path, device, dtype),
    };
    let loaded = loaded.with_context(|| format!("loading {}", path.display()));
    spinner.finish_and_clear();
    let loaded = loaded?;
    let c = &loaded.model.config;
    eprintln!(
        "loaded {}: {} layers, hidden {}, vocab {}, context {} in {:.1} s",
        path.display(),
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size,
        loaded.model.max_positions(),
        start.elapsed().as_secs_f64()
    );
    Ok(loaded)
}

/// `--label`, or the planner's file stem, `+ LoRA` when adapters are used, and the mode.
pub fn default_label(label: &Option<String>, models: &RoleModelArgs, mode: &str) -> String {
    label.clone().unwrap_or_else(|| {
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let adapted = [
            &models.planner_adapter,
            &models.caller_adapter,
            &models.summarizer_adapter,
        ]
        .iter()
        .any(|a| a.is_some());
        format!(
            "{}{} ({mode})",
            stem(models.planner.as_deref().unwrap_or(&models.model)),
            if adapted { " + LoRA" } else { "" },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        models: RoleModelArgs,
    }

    fn args(flags: &[&str]) -> RoleModelArgs {
        Cli::try_parse_from(std::iter::once("umi").chain(flags.iter().copied()))
            .unwrap()
            .models
    }

    /// A folder laid out as assets/agent/<model>/: one adapter_config.json per role.
    fn agent_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("umi-agent-{name}-{}", std::process::id()));
        for role in ["planner", "caller", "summarizer"] {
            std::fs::create_dir_all(dir.join(role)).unwrap();
            std::fs::write(dir.join(role).join("adapter_config.json"), "{}").unwrap();
        }
        dir
    }

    /// `--kv-cache`: auto keeps loading's choice (f16 beside quantized or f16 weights, f32
    /// beside f32 ones), f16 and f32 override it, and the run's description says so.
    #[test]
    fn the_kv_cache_flag_sets_the_cache_precision_of_loaded_models() {
        let tiny =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny/gguf/tiny-f32.gguf");
        let device = Device::flex();
        for (quant, kv_cache, f16) in [
            (Quant::Q8_0, KvCacheDtype::Auto, true),
            (Quant::Q8_0, KvCacheDtype::F32, false),
            (Quant::F32, KvCacheDtype::Auto, false),
            (Quant::F32, KvCacheDtype::F16, true),
            (Quant::Auto, KvCacheDtype::Auto, true),
            (Quant::F16, KvCacheDtype::F32, false),
        ] {
            let mut cache = ModelCache {
                quant,
                kv_cache,
                ..ModelCache::default()
            };
            let loaded = cache.load(&tiny, &device).unwrap();
            assert_eq!(loaded.model.kv_cache_f16, f16, "{quant:?}, {kv_cache:?}");
        }
        assert!(args(&["--kv-cache", "f32"]).describe()[0].ends_with(" (KV cache f32)"));
        assert!(!args(&[]).describe()[0].contains("KV cache"));
    }

    #[test]
    fn the_shipped_agent_fills_the_roles_no_adapter_was_given_for() {
        let dir = agent_dir("fill");
        let all = args(&[]).or_agent_in(true, &dir);
        assert_eq!(
            all.adapters().map(Clone::clone),
            [
                Some(dir.join("planner")),
                Some(dir.join("caller")),
                Some(dir.join("summarizer"))
            ]
        );
        assert!(all.raw_prompts);
        let one = args(&["--caller-adapter", "runs/c"]).or_agent_in(true, &dir);
        assert_eq!(
            one.adapters().map(Clone::clone),
            [
                Some(dir.join("planner")),
                Some(PathBuf::from("runs/c")),
                Some(dir.join("summarizer"))
            ]
        );
        assert!(one.raw_prompts);
        // nothing is filled for zero-shot runs, other backbones, single mode, or when every
        // role has its adapter
        for flags in [
            &["--zero-shot"][..],
            &["--model", "other.gguf", "--caller-adapter", "runs/c"],
            &["--caller", "other.gguf"],
            &["--init-adapter", "runs/g"],
        ] {
            let kept = args(flags).or_agent_in(true, &dir);
            assert!(
                kept.planner_adapter.is_none() && !kept.raw_prompts,
                "{flags:?}"
            );
        }
        assert!(args(&[]).or_agent_in(false, &dir).planner_adapter.is_none());
        let given = args(&[
            "--planner-adapter",
            "p",
            "--caller-adapter",
            "c",
            "--summarizer-adapter",
            "s",
        ])
        .or_agent_in(true, &dir);
        assert_eq!(given.summarizer_adapter, Some(PathBuf::from("s")));
        assert!(!given.raw_prompts);
        // an incomplete agent folder is not used
        std::fs::remove_file(dir.join("caller").join("adapter_config.json")).unwrap();
        assert!(args(&[]).or_agent_in(true, &dir).planner_adapter.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

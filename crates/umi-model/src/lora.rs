//! LoRA adapters (Hu et al. 2021) on a [`Llama`], in PEFT's file layout, and Hugging Face
//! checkpoints out of a model: the artifacts people use elsewhere.
//!
//! - [`LoraConfig`]: PEFT's `adapter_config.json` fields (`r`, `lora_alpha`, `lora_dropout`,
//!   `target_modules`);
//! - [`attach_lora`] puts fresh adapters (B = 0, so the model is unchanged) on the target
//!   projections; [`save_peft`] / [`load_peft`] write and read `adapter_config.json` +
//!   `adapter_model.safetensors` with PEFT's names (`base_model.model.<module>.lora_A.weight`,
//!   `[r, in]` = Aᵀ; `lora_B.weight`, `[out, r]` = Bᵀ); [`merge_lora`] folds them into the base;
//! - [`save_hf`] writes `config.json` + `model.safetensors` (f32) that `transformers` loads.
//!
//! Files are written to a temporary name and renamed, so a reader never sees half a file.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::linear::LoraAdapter;
use crate::llama::Llama;
use crate::params::{
    LayerPart, LoraMatrix, ParamRef, is_peft_lora_name, lora_target_modules, peft_name,
    peft_pair_name,
};
use crate::rng::SplitMix64;
use crate::weights::HostTensor;
use crate::{Error, Result};

/// PEFT's LoRA settings (`adapter_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Scale numerator: the update is `(lora_alpha / r)·x·A·B`.
    pub lora_alpha: f64,
    /// Dropout on the adapter's input while training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Projection names the adapters go on (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`, `lm_head`).
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    /// r 8, alpha 16, dropout 0.05, every attention and MLP projection.
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.05,
            target_modules: LayerPart::PROJECTIONS
                .iter()
                .map(|p| p.leaf().to_string())
                .collect(),
        }
    }
}

impl LoraConfig {
    /// `lora_alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// Checks the settings; `origin` names where they came from in the message.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero rank, a dropout outside `[0, 1)`, or an unknown module name.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Config {
                file: origin.to_string(),
                message,
            })
        };
        if self.r == 0 {
            return bad("LoRA rank r must be positive".into());
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(format!(
                "lora_dropout must be in [0, 1), not {}",
                self.lora_dropout
            ));
        }
        let known = lora_target_modules();
        if let Some(m) = self
            .target_modules
            .iter()
            .find(|m| !known.contains(&m.as_str()))
        {
            return bad(format!(
                "unknown LoRA target module {m:?} (expected some of {known:?})"
            ));
        }
        if self.target_modules.is_empty() {
            return bad("target_modules is empty".into());
        }
        Ok(())
    }
}

impl Llama {
    /// Turns adapter dropout on (training) or off (inference).
    pub fn set_lora_training(&mut self, training: bool) {
        for (_, p) in self.projections_mut() {
            if let Some(lora) = &mut p.lora {
                lora.training = training;
            }
        }
    }
}

/// The LoRA adapters of one model, by Hugging Face module name: one role's specialisation of a
/// shared backbone (α-UMi's planner, caller or summarizer after GLPFT's local stage), swapped in
/// and out without copying the backbone — three roles cost one model's memory plus three
/// adapters (α-UMi §3.3 runs three full models; adapters are umi's cheaper equivalent).
#[derive(Debug, Clone, Default)]
pub struct AdapterSet {
    /// `(module name, adapter)` pairs, in [`Llama::projections`] order.
    pub adapters: Vec<(String, LoraAdapter)>,
}

impl AdapterSet {
    /// Number of adapted projections.
    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    /// Whether no projection is adapted (the base model).
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }
}

impl Llama {
    /// Detaches every adapter and returns them; the model is its base model again.
    pub fn take_adapters(&mut self) -> AdapterSet {
        let adapters = self
            .projections_mut()
            .into_iter()
            .filter_map(|(name, p)| p.lora.take().map(|a| (name, a)))
            .collect();
        AdapterSet { adapters }
    }

    /// Installs `set` (the tensors are shared, not copied), replacing whatever adapters the
    /// model had; projections `set` does not name run without one.
    pub fn set_adapters(&mut self, set: &AdapterSet) {
        for (name, p) in self.projections_mut() {
            p.lora = set
                .adapters
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| a.clone());
        }
    }
}

fn targeted(config: &LoraConfig, module: &str) -> bool {
    let leaf = module.rsplit('.').next().unwrap_or(module);
    config.target_modules.iter().any(|t| t == leaf)
}

/// Attaches fresh adapters to the projections `config` targets: `A` random (PEFT's
/// Kaiming-uniform, `U(±1/√in)`), `B = 0`, so the model's output is unchanged.
///
/// `A` is drawn on the host from `seed` (a splitmix64 stream per projection, started from the
/// seed and the module's name) and uploaded, not with the device's generator: the same seed
/// gives bit-identical adapters on every backend (CPU, Vulkan, WebGPU in a browser), so a
/// browser run can be compared step by step with a native one.
///
/// # Errors
///
/// [`Error::Config`] when `config` is invalid.
pub fn attach_lora(
    model: &mut Llama,
    config: &LoraConfig,
    seed: u64,
    device: &Device,
) -> Result<()> {
    config.validate("LoRA settings")?;
    for (name, p) in model.projections_mut() {
        if targeted(config, &name) {
            let (d_in, d_out) = (p.d_input(), p.d_output());
            let bound = 1.0 / (d_in as f64).sqrt();
            let mut stream = SplitMix64::new(seed, &name);
            let data: Vec<f32> = (0..d_in * config.r)
                .map(|_| ((2.0 * stream.unit() - 1.0) * bound) as f32)
                .collect();
            let a = Tensor::<2>::from_data(TensorData::new(data, [d_in, config.r]), device);
            p.lora = Some(LoraAdapter {
                a: Param::from_tensor(a),
                b: Param::from_tensor(Tensor::zeros([config.r, d_out], device)),
                scaling: config.scaling(),
                dropout: config.lora_dropout,
                training: false,
            });
        }
    }
    Ok(())
}

/// Folds every adapter into its base weight (`W ← W + s·A·B`) and removes it: the merged model
/// computes the same function without adapter cost. A weight held quantized is merged into its
/// dequantized values and stays f32 ([`crate::Llama::quantize`] again to quantize it):
/// merge before quantizing to merge into the original weights. A weight held in f16
/// ([`crate::Llama::half`]) is merged in f32 and held in f16 again.
pub fn merge_lora(model: &mut Llama) {
    for (_, p) in model.projections_mut() {
        if let Some(lora) = p.lora.take() {
            let delta = lora.a.val().matmul(lora.b.val()).mul_scalar(lora.scaling);
            let half = p.weight.val().dtype() == burn::tensor::DType::F16;
            let merged = p.weight_f32() + delta;
            // a model held in f16 (`Llama::half`) stays in f16; on the CPU `[out, in]` in memory
            p.weight = Param::from_tensor(crate::linear::held_out_in(if half {
                merged.cast(burn::tensor::FloatDType::F16)
            } else {
                merged
            }));
            p.quantized = None;
        }
    }
}

/// Folds every adapter that sits on a Q8_0 weight into that weight and removes it, the result
/// quantized to Q8_0 again (`W ← Q8_0(dequantize(W) + s·A·B)`): the merged projection decodes
/// as fast as the base model, where an attached adapter runs two products of its own per
/// projection (a SmolLM2 Q8_0 decode with the planner adapter ran at 0.73× the base model's
/// speed).
/// The merged weight is a new matrix (the model's others stay shared with its copies), so each
/// merged role costs one copy of the projections' quantized bytes.
///
/// The second rounding moves each weight by at most half a Q8_0 step (a 254th of its block's
/// largest magnitude) besides the first; tests bound the logits against the f32 adapter. Small
/// as that is, it changes what a small agent does: the shipped agent with its three roles
/// merged passed 60.0 % of the live test tasks against 66.5 % attached (EVAL.md), so the agent
/// keeps its adapters attached and this is for measuring (`umi bench --merge-adapter`) and for
/// work where speed matters more than those decisions.
/// Adapters on f32 or Q4_1 weights stay attached (merged into 4 bits, a rank-16 update would
/// mostly round away). Returns the number of adapters merged.
#[cfg(not(target_family = "wasm"))]
pub fn merge_lora_quantized(model: &mut Llama) -> usize {
    use crate::qmatmul::{QFormat, QMatrix};
    let mut merged = 0;
    for (_, p) in model.projections_mut() {
        let on_q8 = matches!(&p.quantized, Some(q) if q.0.format() == QFormat::Q8_0);
        let Some(lora) = p.lora.take_if(|_| on_q8) else {
            continue;
        };
        let weight = &p.quantized.as_ref().expect("checked above").0;
        // Bᵀ·Aᵀ is `[out, in]`, the layout of the quantized rows
        let delta = lora
            .b
            .val()
            .transpose()
            .matmul(lora.a.val().transpose())
            .mul_scalar(lora.scaling);
        let delta = delta
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 after convert");
        let mut values = weight.dequantize();
        for (w, d) in values.iter_mut().zip(&delta) {
            *w += d;
        }
        let requantized = QMatrix::from_rows(QFormat::Q8_0, &values, weight.rows(), weight.cols())
            .expect("a Q8_0 matrix's width is a multiple of the block");
        p.quantized = Some(crate::linear::QuantizedWeight::new(requantized));
        merged += 1;
    }
    merged
}

fn host_of(tensor: Tensor<2>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    let data = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a tensor back: {e:?}")))?;
    Ok(HostTensor { shape, data })
}

/// [`umi_util::write_atomically`], its error naming `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    umi_util::write_atomically(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn safetensors_bytes(tensors: &BTreeMap<String, HostTensor>) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Device(format!("serialising {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Device(format!("serialising safetensors: {e}")))
}

/// `(PEFT name, tensor in umi's layout)` of every adapter matrix of `model`: `A` `[in, r]` as
/// `…lora_A.weight`, `B` `[r, out]` as `…lora_B.weight` (both still to be transposed).
fn adapter_tensors(model: &Llama) -> Vec<(String, Tensor<2>)> {
    model
        .named_params()
        .filter_map(|(name, p)| match p {
            ParamRef::Adapter(m) => Some((name, m.val())),
            _ => None,
        })
        .collect()
}

/// The adapters of `model` as PEFT names them, in PEFT's layout (`lora_A.weight` `[r, in]`,
/// `lora_B.weight` `[out, r]`). Reads synchronously: native only (see
/// [`peft_state_dict_async`]).
///
/// # Errors
///
/// [`Error::Device`] if a tensor cannot be read back.
pub fn peft_state_dict(model: &Llama) -> Result<BTreeMap<String, HostTensor>> {
    adapter_tensors(model)
        .into_iter()
        .map(|(name, t)| Ok((name, host_of(t)?.transposed())))
        .collect()
}

/// As [`peft_state_dict`], read back asynchronously in one transaction: the form that works
/// in a browser (WebGPU forbids synchronous reads).
///
/// # Errors
///
/// [`Error::Device`] if the tensors cannot be read back.
pub async fn peft_state_dict_async(model: &Llama) -> Result<BTreeMap<String, HostTensor>> {
    let tensors = adapter_tensors(model);
    let shapes: Vec<Vec<usize>> = tensors.iter().map(|(_, t)| t.dims().to_vec()).collect();
    let mut transaction = burn::tensor::Transaction::default();
    for (_, t) in &tensors {
        // out of autodiff: a transaction reads tensors of one kind only
        transaction = transaction.register(t.clone().inner());
    }
    let data = transaction
        .execute_async()
        .await
        .map_err(|e| Error::Device(format!("reading the adapters back: {e:?}")))?;
    tensors
        .into_iter()
        .zip(shapes)
        .zip(data)
        .map(|(((name, _), shape), data)| {
            let data = data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Device(format!("reading {name} back: {e:?}")))?;
            Ok((name, HostTensor { shape, data }.transposed()))
        })
        .collect()
}

/// A PEFT adapter folder's two files, in memory (for storage that is not a file system, such
/// as a browser's Cache API or a download).
#[derive(Debug, Clone, PartialEq)]
pub struct PeftFiles {
    /// `adapter_config.json`: `peft_type` LORA, `r`, `lora_alpha`, `lora_dropout`,
    /// `target_modules`, `bias` none.
    pub adapter_config: String,
    /// `adapter_model.safetensors`: f32 tensors named as [`peft_state_dict`] names them.
    pub adapter_model: Vec<u8>,
}

/// The files of a PEFT adapter folder from `tensors` (as [`peft_state_dict`] or
/// [`peft_state_dict_async`] give them) and `config`; `base_model` goes into
/// `base_model_name_or_path` (the model the adapter was trained on: a Hugging Face folder, or a
/// GGUF file, which transformers reads with `gguf_file=`; `null` when unknown); `origin` names
/// the adapter in errors.
///
/// # Errors
///
/// [`Error::Config`] when `tensors` is empty (no adapters); [`Error::Device`] if serialising
/// fails.
pub fn peft_files(
    tensors: &BTreeMap<String, HostTensor>,
    config: &LoraConfig,
    base_model: Option<&str>,
    origin: &str,
) -> Result<PeftFiles> {
    if tensors.is_empty() {
        return Err(Error::Config {
            file: origin.to_string(),
            message: "the model has no LoRA adapters to save".into(),
        });
    }
    let adapter_config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": config.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "base_model_name_or_path": base_model,
    });
    Ok(PeftFiles {
        adapter_config: serde_json::to_string_pretty(&adapter_config)
            .expect("JSON values serialise"),
        adapter_model: safetensors_bytes(tensors)?,
    })
}

/// Writes the adapters of `model` as a PEFT adapter folder (`adapter_config.json`,
/// `adapter_model.safetensors`), loadable by `PeftModel.from_pretrained`; `base_model` as in
/// [`peft_files`].
///
/// # Errors
///
/// [`Error::Io`] when the folder cannot be written; [`Error::Config`] if the model has no
/// adapters.
pub fn save_peft(
    model: &Llama,
    config: &LoraConfig,
    base_model: Option<&str>,
    dir: &Path,
) -> Result<()> {
    let files = peft_files(
        &peft_state_dict(model)?,
        config,
        base_model,
        &dir.display().to_string(),
    )?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomically(&dir.join("adapter_model.safetensors"), &files.adapter_model)?;
    write_atomically(
        &dir.join("adapter_config.json"),
        files.adapter_config.as_bytes(),
    )
}

/// Copies the PEFT adapter folder `src` to `dst` with every tensor stored as f16 (half the
/// size of umi's f32 files; values keep f16's 11-bit significand, a relative error ≤ 2⁻¹¹),
/// the form small adapters are shipped in. `adapter_config.json` is copied as it is.
///
/// # Errors
///
/// [`Error::Io`] when a file cannot be read or written; [`Error::Config`] naming the file when
/// `adapter_model.safetensors` is not safetensors or holds a value too large for f16;
/// [`Error::UnsupportedDtype`] for a tensor that is not F32, F16 or BF16.
pub fn convert_peft_f16(src: &Path, dst: &Path) -> Result<()> {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let model_path = src.join("adapter_model.safetensors");
    let origin = model_path.display().to_string();
    let bad = |message: String| Error::Config {
        file: origin.clone(),
        message,
    };
    let bytes = read(&model_path)?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        let values = crate::weights::safetensors::host_tensor(&view, &name, &origin)?.data;
        if let Some(v) = values.iter().find(|v| !v.is_finite() || v.abs() > 65504.0) {
            return Err(bad(format!(
                "tensor {name} holds {v}, which f16 cannot store"
            )));
        }
        let out: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        converted.push((name, view.shape().to_vec(), out));
    }
    let views: Vec<(String, TensorView<'_>)> = converted
        .iter()
        .map(|(n, shape, b)| {
            TensorView::new(Dtype::F16, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))?;
    std::fs::create_dir_all(dst).map_err(|source| Error::Io {
        path: dst.to_path_buf(),
        source,
    })?;
    let config = read(&src.join("adapter_config.json"))?;
    write_atomically(&dst.join("adapter_model.safetensors"), &out)?;
    write_atomically(&dst.join("adapter_config.json"), &config)
}

/// Reads a PEFT LoRA adapter folder and attaches it to `model` (replacing any adapters).
///
/// # Errors
///
/// [`Error::Io`] / [`Error::Config`] naming the file when it is missing or malformed, when the
/// adapter is not LoRA, uses unsupported options (`use_dora`, `use_rslora`, bias), targets a
/// module the model lacks, or a tensor has the wrong shape.
pub fn load_peft(model: &mut Llama, dir: &Path, device: &Device) -> Result<LoraConfig> {
    let (config, set) = read_peft(model, dir, device)?;
    model.set_adapters(&set);
    Ok(config)
}

/// Reads a PEFT LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`, read
/// by [`peft_from_bytes`]) as an [`AdapterSet`] for `model`, leaving `model`'s own
/// adapters as they were (see [`load_peft`] for what is checked).
///
/// # Errors
///
/// As [`load_peft`].
pub fn read_peft(model: &Llama, dir: &Path, device: &Device) -> Result<(LoraConfig, AdapterSet)> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let weights_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|source| Error::Io {
        path: weights_path.clone(),
        source,
    })?;
    peft_from_bytes(
        model,
        &text,
        &bytes,
        &config_path.display().to_string(),
        &weights_path.display().to_string(),
        device,
    )
}

/// A PEFT LoRA adapter from the contents of its two files (`adapter_config.json`,
/// `adapter_model.safetensors`) as an [`AdapterSet`] for `model`, which is not changed: what
/// [`load_peft`] reads from a folder, for adapters that come from elsewhere (the browser fetches
/// them). `config_origin` and `weights_origin` name the files in errors.
///
/// # Errors
///
/// As [`load_peft`].
pub fn peft_from_bytes(
    model: &Llama,
    adapter_config: &str,
    adapter_model: &[u8],
    config_origin: &str,
    weights_origin: &str,
    device: &Device,
) -> Result<(LoraConfig, AdapterSet)> {
    let origin = config_origin.to_string();
    let raw: serde_json::Value =
        serde_json::from_str(adapter_config).map_err(|e| Error::Config {
            file: origin.clone(),
            message: e.to_string(),
        })?;
    let bad = |message: String| Error::Config {
        file: origin.clone(),
        message,
    };
    if let Some(t) = raw.get("peft_type").and_then(|v| v.as_str())
        && t != "LORA"
    {
        return Err(bad(format!("peft_type is {t:?}; only LORA is supported")));
    }
    for flag in ["use_dora", "use_rslora"] {
        if raw.get(flag).and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(format!("{flag} = true is not supported")));
        }
    }
    if raw
        .get("bias")
        .and_then(|v| v.as_str())
        .is_some_and(|b| b != "none")
    {
        return Err(bad("only bias = \"none\" is supported".into()));
    }
    let config: LoraConfig = serde_json::from_value(raw.clone()).map_err(|e| bad(e.to_string()))?;
    config.validate(&origin)?;

    let wfile = weights_origin.to_string();
    let st = safetensors::SafeTensors::deserialize(adapter_model).map_err(|e| Error::Format {
        file: wfile.clone(),
        format: "safetensors",
        message: e.to_string(),
    })?;
    let read = |name: &str| -> Result<Option<HostTensor>> {
        let Ok(view) = st.tensor(name) else {
            return Ok(None);
        };
        crate::weights::safetensors::host_tensor(&view, name, &wfile).map(Some)
    };
    let mut attached = 0;
    let mut set = AdapterSet::default();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    for (name, p) in model.projections() {
        let (a_name, b_name) = (
            peft_name(&name, LoraMatrix::A),
            peft_name(&name, LoraMatrix::B),
        );
        let (a, b) = match (read(&a_name)?, read(&b_name)?) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => continue,
            _ => {
                return Err(Error::MissingTensor {
                    file: wfile.clone(),
                    tensor: format!(
                        "`{}` (only one of the pair is present)",
                        peft_pair_name(&name)
                    ),
                });
            }
        };
        let (d_in, d_out) = (p.d_input(), p.d_output());
        for (t, expected, t_name) in [
            (&a, [config.r, d_in], &a_name),
            (&b, [d_out, config.r], &b_name),
        ] {
            if t.shape != expected {
                return Err(Error::ShapeMismatch {
                    file: wfile.clone(),
                    tensor: format!("`{t_name}`"),
                    expected: expected.to_vec(),
                    got: t.shape.clone(),
                });
            }
        }
        let to_tensor = |t: HostTensor| {
            let t = t.transposed();
            Tensor::<2>::from_data(TensorData::new(t.data, t.shape), device)
        };
        set.adapters.push((
            name,
            LoraAdapter {
                a: Param::from_tensor(to_tensor(a)),
                b: Param::from_tensor(to_tensor(b)),
                scaling: config.scaling(),
                dropout: config.lora_dropout,
                training: false,
            },
        ));
        attached += 2;
    }
    let lora_tensors = names.iter().filter(|n| is_peft_lora_name(n)).count();
    if attached != lora_tensors {
        return Err(bad(format!(
            "{wfile} has {lora_tensors} LoRA tensors but only {attached} match this model's projections \
             (a different architecture, or modules other than the Llama projections)"
        )));
    }
    Ok((config, set))
}

/// The model's weights with Hugging Face names and layouts (`[out, in]` projections); adapters
/// are not included (merge them first with [`merge_lora`] to export a fine-tuned model).
///
/// # Errors
///
/// [`Error::Device`] if a tensor cannot be read back; [`Error::Config`] if the weights are held
/// quantized ([`Llama::quantize`], [`crate::load_model_quantized`]).
pub fn hf_state_dict(model: &Llama) -> Result<BTreeMap<String, HostTensor>> {
    if model.is_quantized() {
        return Err(Error::Config {
            file: "model".into(),
            message: "the model's weights are held quantized (Q8_0 or Q4_1) for inference (--quant); load it \
                      without quantizing to read or save its f32 weights"
                .into(),
        });
    }
    let mut out = BTreeMap::new();
    let vec1 = |t: Tensor<1>| -> Result<HostTensor> {
        let n = t.dims()[0];
        host_of(t.reshape([1, n])).map(|h| HostTensor {
            shape: vec![n],
            data: h.data,
        })
    };
    for (name, p) in model.named_params() {
        let tensor = match p {
            ParamRef::Norm(w) => vec1(w.val())?,
            ParamRef::Embedding(w) => host_of(w.val())?,
            ParamRef::Projection(w) => host_of(w.val())?.transposed(),
            ParamRef::Adapter(_) => continue,
        };
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Writes `model` as a Hugging Face checkpoint folder (`config.json`, `model.safetensors`, f32)
/// that `transformers.AutoModelForCausalLM.from_pretrained` and umi's own loader read.
///
/// # Errors
///
/// [`Error::Io`] when the folder cannot be written; [`Error::Config`] if adapters are attached
/// (merge or remove them first: an unmerged checkpoint would silently drop them) or the weights
/// are held quantized (nothing is written then).
pub fn save_hf(model: &Llama, dir: &Path) -> Result<()> {
    if model.projections().iter().any(|(_, p)| p.lora.is_some()) {
        return Err(Error::Config {
            file: dir.display().to_string(),
            message: "the model has LoRA adapters attached; merge them (merge_lora) or save them with save_peft".into(),
        });
    }
    // read first: a quantized model is refused before anything is written
    let state = hf_state_dict(model)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut config = serde_json::to_value(&model.config).expect("config serialises");
    if let Some(map) = config.as_object_mut() {
        map.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        map.insert("model_type".into(), "llama".into());
        map.insert("torch_dtype".into(), "float32".into());
    }
    write_atomically(&dir.join("model.safetensors"), &safetensors_bytes(&state)?)?;
    write_atomically(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)
            .expect("JSON values serialise")
            .as_bytes(),
    )
}

/// Writes `tokenizer.json` and `tokenizer_config.json` ([`crate::Tokenizer::to_hf_files`]: BOS/EOS,
/// `add_bos_token`, the chat template) into the model folder `dir`, so that the folder
/// [`save_hf`] wrote reloads in umi and in `transformers` with the same tokenization and
/// prompt format as the model it came from.
///
/// # Errors
///
/// [`Error::Io`] when the folder cannot be written; [`Error::Tokenizer`] if the tokenizer
/// cannot be serialised.
pub fn save_hf_tokenizer(
    tokenizer: &crate::Tokenizer,
    chat_template: &crate::ChatTemplate,
    model_max_length: usize,
    dir: &Path,
) -> Result<()> {
    let (tokenizer_json, tokenizer_config) =
        tokenizer.to_hf_files(chat_template, model_max_length)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomically(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    write_atomically(
        &dir.join("tokenizer_config.json"),
        tokenizer_config.as_bytes(),
    )
}

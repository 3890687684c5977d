//! The one place that knows what a [`Llama`]'s parameters are called in files: Hugging Face's
//! `LlamaForCausalLM` state dict (`model.layers.0.self_attn.q_proj.weight`, …) for the base
//! weights and PEFT's LoRA names (`base_model.model.<module>.lora_A.weight`) for the adapters.
//!
//! [`Llama::named_params`] walks the model and names every parameter; [`Llama::projections`]
//! names the projections (the LoRA slots). Loading ([`crate::weights::build_llama`]), export
//! ([`crate::hf_state_dict`]), PEFT I/O ([`crate::peft_state_dict`], [`crate::load_peft`]) and
//! the trainer's named gradients all take their names from here.

use burn::module::{Param, ParamId};
use burn::tensor::Tensor;

use crate::linear::LoraLinear;
use crate::llama::{DecoderLayer, Llama, RmsNorm};

/// Hugging Face's module path of the token embedding.
pub(crate) const EMBED_TOKENS: &str = "model.embed_tokens";
/// Hugging Face's module path of the final norm.
pub(crate) const FINAL_NORM: &str = "model.norm";
/// Hugging Face's module path of the untied LM head (also its PEFT target-module name).
pub(crate) const LM_HEAD: &str = "lm_head";

/// A module of one decoder layer that holds a weight, as `transformers`' `LlamaDecoderLayer`
/// names it, listed in the order of [`DecoderLayer`]'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerPart {
    /// `input_layernorm`, `[hidden_size]`.
    InputLayernorm,
    /// `self_attn.q_proj`, HF `[num_heads·head_dim, hidden_size]`.
    QProj,
    /// `self_attn.k_proj`, HF `[num_kv_heads·head_dim, hidden_size]`.
    KProj,
    /// `self_attn.v_proj`, HF `[num_kv_heads·head_dim, hidden_size]`.
    VProj,
    /// `self_attn.o_proj`, HF `[hidden_size, num_heads·head_dim]`.
    OProj,
    /// `post_attention_layernorm`, `[hidden_size]`.
    PostAttentionLayernorm,
    /// `mlp.gate_proj`, HF `[intermediate_size, hidden_size]`.
    GateProj,
    /// `mlp.up_proj`, HF `[intermediate_size, hidden_size]`.
    UpProj,
    /// `mlp.down_proj`, HF `[hidden_size, intermediate_size]`.
    DownProj,
}

impl LayerPart {
    /// The seven projections of a layer, in field order.
    pub(crate) const PROJECTIONS: [LayerPart; 7] = [
        LayerPart::QProj,
        LayerPart::KProj,
        LayerPart::VProj,
        LayerPart::OProj,
        LayerPart::GateProj,
        LayerPart::UpProj,
        LayerPart::DownProj,
    ];

    /// The module's path inside `model.layers.{i}` (`self_attn.q_proj`).
    pub(crate) fn path(self) -> &'static str {
        match self {
            LayerPart::InputLayernorm => "input_layernorm",
            LayerPart::QProj => "self_attn.q_proj",
            LayerPart::KProj => "self_attn.k_proj",
            LayerPart::VProj => "self_attn.v_proj",
            LayerPart::OProj => "self_attn.o_proj",
            LayerPart::PostAttentionLayernorm => "post_attention_layernorm",
            LayerPart::GateProj => "mlp.gate_proj",
            LayerPart::UpProj => "mlp.up_proj",
            LayerPart::DownProj => "mlp.down_proj",
        }
    }

    /// The last component of [`LayerPart::path`] (`q_proj`): PEFT's `target_modules` name.
    pub(crate) fn leaf(self) -> &'static str {
        let path = self.path();
        path.rsplit_once('.').map_or(path, |(_, leaf)| leaf)
    }
}

/// The Hugging Face module path of `part` in layer `layer` (`model.layers.0.self_attn.q_proj`).
pub(crate) fn layer_module(layer: usize, part: LayerPart) -> String {
    format!("model.layers.{layer}.{}", part.path())
}

/// The Hugging Face name of `module`'s weight (`model.norm` → `model.norm.weight`).
pub(crate) fn weight_name(module: &str) -> String {
    format!("{module}.weight")
}

/// PEFT's `target_modules` names of the projections LoRA can adapt (`q_proj`, …, `down_proj`,
/// `lm_head`), in [`Llama::projections`] order.
pub(crate) fn lora_target_modules() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = LayerPart::PROJECTIONS.iter().map(|p| p.leaf()).collect();
    out.push(LM_HEAD);
    out
}

/// One of a LoRA adapter's two matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoraMatrix {
    /// The down projection (PEFT's `lora_A`).
    A,
    /// The up projection (PEFT's `lora_B`).
    B,
}

/// PEFT's name of matrix `letters` (`A`, `B`, or `A/B` for messages about the pair) of the
/// adapter on Hugging Face module `module`.
fn peft_name_of(module: &str, letters: &str) -> String {
    format!("base_model.model.{module}.lora_{letters}.weight")
}

/// PEFT's name of the adapter matrix `matrix` on Hugging Face module `module`
/// (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
pub(crate) fn peft_name(module: &str, matrix: LoraMatrix) -> String {
    let letter = match matrix {
        LoraMatrix::A => "A",
        LoraMatrix::B => "B",
    };
    peft_name_of(module, letter)
}

/// Both adapter matrices of `module` in one name, for messages
/// (`base_model.model.lm_head.lora_A/B.weight`).
pub(crate) fn peft_pair_name(module: &str) -> String {
    peft_name_of(module, "A/B")
}

/// Whether the tensor called `name` in an adapter file is a LoRA matrix of any module.
pub(crate) fn is_peft_lora_name(name: &str) -> bool {
    name.contains(".lora_")
}

/// A parameter of a [`Llama`] as [`Llama::named_params`] yields it: the parameter, and how umi
/// stores it with respect to the layout of the file its name comes from.
#[derive(Debug, Clone, Copy)]
pub enum ParamRef<'a> {
    /// An RMSNorm weight (`input_layernorm`, `post_attention_layernorm`, `model.norm`),
    /// `[hidden_size]`, stored as Hugging Face stores it.
    Norm(&'a Param<Tensor<1>>),
    /// The token embedding `model.embed_tokens.weight`, `[vocab_size, hidden_size]`, stored as
    /// Hugging Face stores it.
    Embedding(&'a Param<Tensor<2>>),
    /// A projection's base weight, stored `[in, out]`: the transpose of Hugging Face's
    /// `[out, in]` (see [`LoraLinear`]).
    Projection(&'a Param<Tensor<2>>),
    /// A LoRA adapter matrix, stored `A` `[in, r]` / `B` `[r, out]`: the transposes of PEFT's
    /// `lora_A.weight` `[r, in]` / `lora_B.weight` `[out, r]` (see [`crate::LoraAdapter`]).
    Adapter(&'a Param<Tensor<2>>),
}

impl ParamRef<'_> {
    /// The parameter's id (burn keys gradients and optimizer state by it).
    pub fn id(&self) -> ParamId {
        match self {
            ParamRef::Norm(p) => p.id,
            ParamRef::Embedding(p) | ParamRef::Projection(p) | ParamRef::Adapter(p) => p.id,
        }
    }

    /// Whether this is a LoRA adapter matrix (named as PEFT names it) rather than a base weight
    /// (named as Hugging Face names it).
    pub fn is_adapter(&self) -> bool {
        matches!(self, ParamRef::Adapter(_))
    }
}

/// A weight-holding module of a decoder layer.
enum Slot<'a> {
    Norm(&'a RmsNorm),
    Linear(&'a LoraLinear),
}

impl DecoderLayer {
    /// Every weight-holding module of the layer, in field order.
    fn parts(&self) -> [(LayerPart, Slot<'_>); 9] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            (LayerPart::InputLayernorm, Slot::Norm(&self.input_layernorm)),
            (LayerPart::QProj, Slot::Linear(&a.q_proj)),
            (LayerPart::KProj, Slot::Linear(&a.k_proj)),
            (LayerPart::VProj, Slot::Linear(&a.v_proj)),
            (LayerPart::OProj, Slot::Linear(&a.o_proj)),
            (
                LayerPart::PostAttentionLayernorm,
                Slot::Norm(&self.post_attention_layernorm),
            ),
            (LayerPart::GateProj, Slot::Linear(&m.gate_proj)),
            (LayerPart::UpProj, Slot::Linear(&m.up_proj)),
            (LayerPart::DownProj, Slot::Linear(&m.down_proj)),
        ]
    }

    /// The layer's projections, mutable, in field order ([`LayerPart::PROJECTIONS`]).
    fn projections_mut(&mut self) -> [(LayerPart, &mut LoraLinear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            (LayerPart::QProj, &mut a.q_proj),
            (LayerPart::KProj, &mut a.k_proj),
            (LayerPart::VProj, &mut a.v_proj),
            (LayerPart::OProj, &mut a.o_proj),
            (LayerPart::GateProj, &mut m.gate_proj),
            (LayerPart::UpProj, &mut m.up_proj),
            (LayerPart::DownProj, &mut m.down_proj),
        ]
    }
}

/// Pushes a projection's base weight and, when it has one, its adapter's `A` and `B`.
fn push_linear<'a>(out: &mut Vec<(String, ParamRef<'a>)>, module: &str, p: &'a LoraLinear) {
    out.push((weight_name(module), ParamRef::Projection(&p.weight)));
    if let Some(lora) = &p.lora {
        out.push((peft_name(module, LoraMatrix::A), ParamRef::Adapter(&lora.a)));
        out.push((peft_name(module, LoraMatrix::B), ParamRef::Adapter(&lora.b)));
    }
}

impl Llama {
    /// Every parameter of the model with the name files give it: base weights as in Hugging
    /// Face's `LlamaForCausalLM` state dict (`model.embed_tokens.weight`,
    /// `model.layers.{i}.input_layernorm.weight`, `model.layers.{i}.self_attn.q_proj.weight`,
    /// …, `model.norm.weight`, `lm_head.weight` when untied), adapter matrices as PEFT names
    /// them (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, `…lora_B.weight`),
    /// each right after its projection's weight.
    ///
    /// The order is that of the model's fields, which is also the order burn's
    /// [`Module::visit`](burn::module::Module::visit) visits the parameters in: the embedding,
    /// then per layer `input_layernorm`, `q/k/v/o_proj`, `post_attention_layernorm`,
    /// `gate/up/down_proj`, then the final norm and the LM head. The RoPE tables are constants,
    /// not parameters, and are not named. [`ParamRef`] says how each is stored relative to its
    /// file layout (projections and adapters transposed).
    pub fn named_params(&self) -> impl Iterator<Item = (String, ParamRef<'_>)> {
        let mut out = vec![(
            weight_name(EMBED_TOKENS),
            ParamRef::Embedding(&self.embed_tokens),
        )];
        for (i, layer) in self.layers.iter().enumerate() {
            for (part, slot) in layer.parts() {
                let module = layer_module(i, part);
                match slot {
                    Slot::Norm(norm) => {
                        out.push((weight_name(&module), ParamRef::Norm(&norm.weight)));
                    }
                    Slot::Linear(p) => push_linear(&mut out, &module, p),
                }
            }
        }
        out.push((weight_name(FINAL_NORM), ParamRef::Norm(&self.norm.weight)));
        if let Some(head) = &self.lm_head {
            push_linear(&mut out, LM_HEAD, head);
        }
        out.into_iter()
    }

    /// Every projection with its Hugging Face module name (`model.layers.0.self_attn.q_proj`,
    /// …, `lm_head` when untied), in a fixed order: per layer `q/k/v/o_proj`,
    /// `gate/up/down_proj`, then the LM head.
    pub fn projections(&self) -> Vec<(String, &LoraLinear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (part, slot) in layer.parts() {
                if let Slot::Linear(p) = slot {
                    out.push((layer_module(i, part), p));
                }
            }
        }
        if let Some(head) = &self.lm_head {
            out.push((LM_HEAD.to_string(), head));
        }
        out
    }

    /// As [`Llama::projections`], mutable.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (part, p) in layer.projections_mut() {
                out.push((layer_module(i, part), p));
            }
        }
        if let Some(head) = &mut self.lm_head {
            out.push((LM_HEAD.to_string(), head));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor};
    use burn::tensor::Device;

    use super::*;
    use crate::config::LlamaConfig;
    use crate::lora::{LoraConfig, attach_lora};
    use crate::weights::{HostTensor, RandomWeights, WeightSource, build_llama};

    /// A tiny config with `layers` layers and an untied head.
    fn config(layers: usize) -> LlamaConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 16,
            "hidden_size": 8,
            "intermediate_size": 12,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 8,
            "tie_word_embeddings": false,
        }))
        .unwrap()
    }

    /// Random weights that remember the names they were asked for.
    struct Recording {
        weights: RandomWeights,
        asked: Vec<String>,
    }

    impl WeightSource for Recording {
        fn origin(&self) -> String {
            self.weights.origin()
        }

        fn tensor(&mut self, name: &str) -> crate::Result<Option<HostTensor>> {
            self.asked.push(name.to_string());
            self.weights.tensor(name)
        }
    }

    fn recording(config: &LlamaConfig) -> Recording {
        Recording {
            weights: RandomWeights {
                config: config.clone(),
                seed: 1,
            },
            asked: Vec::new(),
        }
    }

    /// One layer, untied head, adapters on every projection including the head.
    fn model() -> Llama {
        let config = config(1);
        let device = Device::flex();
        let mut model = build_llama(&config, &mut recording(&config), &device).unwrap();
        let lora = LoraConfig {
            target_modules: lora_target_modules()
                .into_iter()
                .map(String::from)
                .collect(),
            ..LoraConfig::default()
        };
        attach_lora(&mut model, &lora, 0, &device).unwrap();
        model
    }

    #[test]
    fn named_params_spell_hugging_face_and_peft_names() {
        let names: Vec<String> = model().named_params().map(|(n, _)| n).collect();
        let mut want = vec![
            "model.embed_tokens.weight".to_string(),
            "model.layers.0.input_layernorm.weight".into(),
        ];
        let adapted = |want: &mut Vec<String>, module: &str| {
            want.push(format!("{module}.weight"));
            want.push(format!("base_model.model.{module}.lora_A.weight"));
            want.push(format!("base_model.model.{module}.lora_B.weight"));
        };
        for m in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            adapted(&mut want, &format!("model.layers.0.self_attn.{m}"));
        }
        want.push("model.layers.0.post_attention_layernorm.weight".into());
        for m in ["gate_proj", "up_proj", "down_proj"] {
            adapted(&mut want, &format!("model.layers.0.mlp.{m}"));
        }
        want.push("model.norm.weight".into());
        adapted(&mut want, "lm_head");
        assert_eq!(names, want);
    }

    /// Every parameter burn's visitor sees is named, once, in the visitor's order.
    #[test]
    fn named_params_cover_every_parameter_in_burn_order() {
        struct Ids(Vec<ParamId>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.id);
            }
        }
        let model = model();
        let mut visited = Ids(Vec::new());
        model.visit(&mut visited);
        let named: Vec<ParamId> = model.named_params().map(|(_, p)| p.id()).collect();
        assert_eq!(named, visited.0);
        let adapters = model.named_params().filter(|(_, p)| p.is_adapter()).count();
        assert_eq!(adapters, 2 * model.projections().len());
    }

    #[test]
    fn projections_are_the_lora_slots_by_module_name() {
        let mut model = model();
        let names: Vec<String> = model.projections().into_iter().map(|(n, _)| n).collect();
        let names_mut: Vec<String> = model
            .projections_mut()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, names_mut);
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "model.layers.0.self_attn.q_proj");
        assert_eq!(names[6], "model.layers.0.mlp.down_proj");
        assert_eq!(names[7], "lm_head");
        assert_eq!(
            peft_pair_name(&names[7]),
            "base_model.model.lm_head.lora_A/B.weight"
        );
        assert_eq!(
            lora_target_modules(),
            [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
                "lm_head"
            ]
        );
    }

    /// The loader asks for exactly the base weights the walk names (the tied head included:
    /// neither has `lm_head.weight` then).
    #[test]
    fn build_llama_reads_the_names_named_params_gives() {
        let device = Device::flex();
        for tied in [false, true] {
            let config = LlamaConfig {
                tie_word_embeddings: tied,
                ..config(2)
            };
            let mut source = recording(&config);
            let model = build_llama(&config, &mut source, &device).unwrap();
            let mut asked = source.asked;
            asked.sort();
            let mut named: Vec<String> = model.named_params().map(|(n, _)| n).collect();
            named.sort();
            assert_eq!(asked, named, "tied {tied}");
            assert_eq!(named.contains(&"lm_head.weight".to_string()), !tied);
        }
    }
}

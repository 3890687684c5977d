//! The toy end-to-end test of process-based self-rewarding (../shared/docs/psrlm-design.md §4
//! T8): the held-out metric moves only when the reward is informative.
//!
//! A 2-layer Llama with SmolLM2's tokenizer learns, by full fine-tuning on a noisy planner set
//! (every training query appears once with each of two tools), to write `I call <tool>.` with
//! no regard for the query: greedy held-out tool accuracy starts near 0.5. Then the real
//! self-rewarding path runs: [`mine_point`] samples 4 candidate steps per training query (gold
//! prefix), a judge compares every ordered pair, best and worst become a pair,
//! [`prepare_pairs`] tokenizes them, [`pair_logps`] records the reference, and
//! [`Trainer::dpo_step`] trains fresh LoRA adapters; greedy held-out tool accuracy is measured
//! again. The judge is the only thing that changes between runs:
//! - an oracle (prefers the step naming the tool the query's keyword asks for): accuracy must
//!   rise to ≥ 0.9;
//! - a seeded random judge, the negative control: accuracy must move by at most 0.15;
//! - a judge that always answers "A": both orders cancel, so no pair and no training.
//!
//! This proves the mining → DPO → evaluation plumbing independently of judge quality.
//!
//! Where this departs from the spec's sketch (DPO at lr 1e-3 for 3 epochs): candidates are
//! sampled at the mining defaults (temperature 0.5, top-p 0.95), and DPO runs at lr 5e-3 for 10
//! epochs with the SFT term on the chosen steps (`sft_weight` 1, TRL's `["sigmoid", "sft"]`).
//! Plain DPO on this model lowers the rejected step by moving its mass onto tokens training never
//! touched, and greedy steps dissolve into them (both judges then score 0); at lr 1e-3 for 3
//! epochs the oracle run moved nothing. A real iteration may meet the same failure: watch that the
//! chosen steps' log-probabilities do not fall (`logps/chosen` in `umi train dpo`'s log).

use pollster::block_on;
use serde_json::{Map, Value};
use umi_agent::{GeneratorError, LlamaGenerator};
use umi_data::batch::{Batch, IGNORE_INDEX};
use umi_data::conversation::{Speaker, Turn};
use umi_data::{PromptSet, Role, history};
use umi_model::weights::{GgufFile, RandomWeights, build_llama};
use umi_model::{
    Backend, ChatTemplate, GenerationConfig, Llama, LlamaConfig, LoadedModel, LoraConfig,
    SplitMix64, TokenIds, Tokenizer,
};
use umi_reward::{GoldPoint, MineConfig, MinedPair, Sampling, SearchModel, mine_point};
use umi_train::{DpoConfig, TrainConfig, Trainer, pair_epoch_steps, pair_logps, prepare_pairs};

const WEATHER: &str = "get_weather_for_demo";
const TIME: &str = "get_time_for_demo";
const SEED: u64 = 7;
/// Most new tokens of a toy step (`I call get_weather_for_demo.\nNext: caller.` is 13).
const STEP_TOKENS: usize = 24;

/// Training cities (20) and held-out ones (10).
const TRAIN_CITIES: [&str; 20] = [
    "Paris", "Tokyo", "Berlin", "Madrid", "Rome", "Lisbon", "Oslo", "Vienna", "Prague", "Dublin",
    "Cairo", "Lima", "Seoul", "Delhi", "Sydney", "Toronto", "Chicago", "Boston", "Denver",
    "Austin",
];
const HELD_OUT_CITIES: [&str; 10] = [
    "London", "Moscow", "Athens", "Warsaw", "Helsinki", "Nairobi", "Bangkok", "Manila", "Havana",
    "Quito",
];

/// A toy query: its text and the tool its keyword asks for.
#[derive(Clone)]
struct Query {
    text: String,
    tool: &'static str,
}

/// Both kinds of query for each city, phrasings taken in turn.
fn queries(cities: &[&str]) -> Vec<Query> {
    let weather = [
        "What is the weather in {c}?",
        "How is the weather in {c} today?",
        "Tell me the weather for {c}.",
    ];
    let time = [
        "What time is it in {c}?",
        "Tell me the local time in {c}.",
        "What is the time in {c} now?",
    ];
    let mut out = Vec::new();
    for (k, c) in cities.iter().enumerate() {
        out.push(Query {
            text: weather[k % weather.len()].replace("{c}", c),
            tool: WEATHER,
        });
        out.push(Query {
            text: time[k % time.len()].replace("{c}", c),
            tool: TIME,
        });
    }
    out
}

/// The two tools' α-UMi docs, as the demo tool specs give them.
fn tool_docs() -> Vec<Map<String, Value>> {
    let specs = serde_json::json!({"tools": [
        {"Name": WEATHER, "function": "The current weather in a city.", "input": {"city": "string, the city"},
         "http": {"method": "GET", "url": "http://127.0.0.1:9/weather"}},
        {"Name": TIME, "function": "The local time in a city.", "input": {"city": "string, the city"},
         "http": {"method": "GET", "url": "http://127.0.0.1:9/time"}}
    ]});
    umi_tools::load_tool_specs(&specs.to_string(), "toy")
        .unwrap()
        .iter()
        .map(|s| s.doc())
        .collect()
}

fn step(tool: &str) -> String {
    format!("I call {tool}.\nNext: caller.")
}

/// The planner prompt of `query` at its first decision (the α-UMi ToolBench prompt, raw).
fn planner_prompt(docs: &[Map<String, Value>], query: &str) -> String {
    let turns = [Turn::new(Speaker::User, query)];
    PromptSet::ToolBench.input(Role::Planner, docs, &history(&turns), "")
}

/// Which tool a step names: `Some` only when it names exactly one of the two.
fn named_tool(step: &str) -> Option<&'static str> {
    match (step.contains(WEATHER), step.contains(TIME)) {
        (true, false) => Some(WEATHER),
        (false, true) => Some(TIME),
        _ => None,
    }
}

/// The judges under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Judge {
    /// Prefers the step naming the tool the query asks for (ties: "A").
    Oracle,
    /// A seeded coin per verdict.
    Random,
    /// Always "A".
    AlwaysA,
}

/// The model's sampling with a scripted judge in place of its own verdicts.
struct Toy {
    generator: LlamaGenerator,
    judge: Judge,
    /// The tool the query of the point being mined asks for (what the oracle knows).
    wanted: &'static str,
    coin: SplitMix64,
}

impl SearchModel for Toy {
    async fn sample(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        sampling: &Sampling,
    ) -> Result<String, GeneratorError> {
        self.generator.sample(role, prompt, stop, sampling).await
    }

    async fn sample_many(
        &mut self,
        role: Role,
        prompt: &str,
        stop: &[String],
        samplings: &[Sampling],
    ) -> Result<Vec<String>, GeneratorError> {
        self.generator
            .sample_many(role, prompt, stop, samplings)
            .await
    }

    async fn verdict_logprobs(
        &mut self,
        _: Role,
        judge: &str,
    ) -> Result<(f64, f64), GeneratorError> {
        let (a_wins, b_wins) = ((-0.1, -3.0), (-3.0, -0.1));
        Ok(match self.judge {
            Judge::AlwaysA => a_wins,
            Judge::Random => {
                if self.coin.next_u64() & 1 == 0 {
                    a_wins
                } else {
                    b_wins
                }
            }
            Judge::Oracle => {
                let right = |who: &str| {
                    let start = format!("[The Start of Assistant {who}'s Next Planning Step]\n");
                    let from = judge.find(&start).expect("a judge prompt block") + start.len();
                    let block = &judge[from..];
                    let block = &block[..block.find("\n[The End").expect("the block's end")];
                    named_tool(block) == Some(self.wanted)
                };
                if right("A") || !right("B") {
                    a_wins
                } else {
                    b_wins
                }
            }
        })
    }

    fn model_prompt(&mut self, role: Role, prompt: &str) -> String {
        self.generator.model_prompt(role, prompt)
    }
}

/// SmolLM2's tokenizer from the installed GGUF (`None`: skipped, see `default_model`).
fn smollm2_tokenizer() -> Option<Tokenizer> {
    let path = umi_tests::default_model()?;
    Some(Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap())
}

fn generator(model: Llama, tokenizer: &Tokenizer) -> LlamaGenerator {
    let loaded = LoadedModel {
        model,
        tokenizer: tokenizer.clone(),
        chat_template: ChatTemplate::ChatMl {
            default_system: None,
        },
        origin: "toy".into(),
    };
    let mut g = LlamaGenerator::shared(
        loaded,
        GenerationConfig {
            max_new_tokens: STEP_TOKENS,
            ..GenerationConfig::default()
        },
    );
    g.use_chat_template = false;
    g
}

/// Greedy held-out tool accuracy (a step naming both tools or neither counts as wrong), and
/// how many steps named exactly one tool.
fn tool_accuracy(
    model: &Llama,
    tokenizer: &Tokenizer,
    docs: &[Map<String, Value>],
) -> (f64, usize) {
    let mut g = generator(model.clone(), tokenizer);
    let stop = [umi_data::parse::END_OF_TURN.to_string()];
    let held_out = queries(&HELD_OUT_CITIES);
    let (mut right, mut named) = (0, 0);
    for q in &held_out {
        let out = block_on(umi_agent::Generator::generate(
            &mut g,
            Role::Planner,
            &planner_prompt(docs, &q.text),
            &stop,
        ))
        .unwrap();
        let tool = named_tool(&out);
        named += usize::from(tool.is_some());
        right += usize::from(tool == Some(q.tool));
    }
    (right as f64 / held_out.len() as f64, named)
}

/// The noisy SFT model: a random 2-layer Llama over SmolLM2's vocabulary, fully fine-tuned on
/// every training query paired with both tools' steps (so the step's tool carries no
/// information about the query).
fn noisy_planner(tokenizer: &Tokenizer, docs: &[Map<String, Value>]) -> Llama {
    let eos = tokenizer.eos_ids().to_vec();
    let config = LlamaConfig {
        vocab_size: tokenizer.vocab_size(),
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 1024,
        tie_word_embeddings: false,
        bos_token_id: tokenizer.bos_id(),
        eos_token_id: TokenIds::from_ids(&eos),
        hidden_act: "silu".into(),
        attention_bias: false,
        mlp_bias: false,
        rope_scaling: None,
    };
    let device = Backend::Cpu.device().unwrap();
    let model = build_llama(
        &config,
        &mut RandomWeights {
            config: config.clone(),
            seed: SEED,
        },
        &device,
    )
    .unwrap();
    let mut examples = Vec::new();
    for q in queries(&TRAIN_CITIES) {
        let prompt = tokenizer
            .encode(&planner_prompt(docs, &q.text), true)
            .unwrap();
        for tool in [WEATHER, TIME] {
            let mut target = tokenizer.encode(&step(tool), false).unwrap();
            target.push(eos[0]);
            let mut ids = prompt.clone();
            ids.extend_from_slice(&target);
            let mut labels = vec![IGNORE_INDEX; prompt.len()];
            labels.extend(target.iter().map(|&t| i64::from(t)));
            examples.push(Batch {
                attention_mask: vec![vec![1; ids.len()]],
                input_ids: vec![ids],
                labels: vec![labels],
            });
        }
    }
    let steps = 200;
    let per_step = 8;
    let config = TrainConfig {
        learning_rate: 3e-3,
        warmup_ratio: 0.0,
        weight_decay: 0.0,
        batch_size: 1,
        gradient_accumulation_steps: per_step,
        max_grad_norm: 1.0,
        max_len: 1024,
        seed: SEED,
        lora: None,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, config, steps, &device).unwrap();
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut last = f64::NAN;
    while trainer.step < steps {
        let at = (trainer.step * per_step) % examples.len();
        if at == 0 {
            umi_data::batch::seeded_shuffle(&mut order, SEED + trainer.step as u64);
        }
        let batch: Vec<Batch> = order[at..at + per_step]
            .iter()
            .map(|&i| examples[i].clone())
            .collect();
        last = block_on(trainer.train_step(&batch)).unwrap().loss;
    }
    eprintln!("noisy SFT: {steps} steps, last loss {last:.4}");
    trainer.inference_model()
}

/// What one self-rewarding round gave.
struct Round {
    pairs: usize,
    before: f64,
    after: f64,
}

/// Mines the training queries with `judge`, trains DPO on the pairs (if any) and measures
/// held-out accuracy before and after.
fn round(
    judge: Judge,
    base: &Llama,
    tokenizer: &Tokenizer,
    docs: &[Map<String, Value>],
    before: f64,
) -> Round {
    let mut toy = Toy {
        generator: generator(base.clone(), tokenizer),
        judge,
        wanted: WEATHER,
        coin: SplitMix64::new(SEED, "random judge"),
    };
    let config = MineConfig {
        width: 4,
        max_new_tokens: STEP_TOKENS,
        seed: SEED,
        ..MineConfig::default()
    };
    let mut mined: Vec<MinedPair> = Vec::new();
    for (k, q) in queries(&TRAIN_CITIES).iter().enumerate() {
        toy.wanted = q.tool;
        let point = GoldPoint {
            id: format!("toy{k:02}-d00"),
            tools: docs.to_vec(),
            history: vec![Turn::new(Speaker::User, q.text.as_str())],
            gold: step(q.tool),
        };
        let (_, pair) = block_on(mine_point(&mut toy, &point, &config)).unwrap();
        mined.extend(pair);
    }
    let rows: Vec<_> = mined.iter().map(|m| m.pair.clone()).collect();
    if judge == Judge::Oracle {
        for m in &mined {
            assert_ne!(
                named_tool(m.pair.chosen.as_deref().unwrap()),
                named_tool(m.pair.rejected.as_deref().unwrap()),
                "an oracle pair chooses between tools"
            );
        }
    }
    if rows.is_empty() {
        return Round {
            pairs: 0,
            before,
            after: before,
        };
    }
    let device = Backend::Cpu.device().unwrap();
    let mut prepared = prepare_pairs(&rows, tokenizer, "planner", 1024, STEP_TOKENS + 1).unwrap();
    assert!(prepared.dropped.is_empty(), "{:?}", prepared.dropped);
    for pair in &mut prepared.pairs {
        let (c, r) = block_on(pair_logps(base, pair, &device)).unwrap();
        (pair.ref_chosen_logps, pair.ref_rejected_logps) = (c, r);
    }
    let pairs = prepared.pairs;
    let train = TrainConfig {
        learning_rate: 5e-3,
        epochs: 10,
        warmup_ratio: 0.0,
        weight_decay: 0.0,
        batch_size: 4,
        gradient_accumulation_steps: 1,
        max_grad_norm: 1.0,
        max_len: 1024,
        seed: SEED,
        lora: Some(LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            ..LoraConfig::default()
        }),
        ..TrainConfig::default()
    };
    let schedule: Vec<Vec<usize>> = (0..train.epochs)
        .flat_map(|e| pair_epoch_steps(pairs.len(), &train, e))
        .collect();
    let mut trainer = Trainer::new(base.clone(), train, schedule.len(), &device).unwrap();
    let dpo = DpoConfig {
        sft_weight: 1.0,
        ..DpoConfig::default()
    };
    let mut first = None;
    let mut last = None;
    for idx in &schedule {
        let batch: Vec<_> = idx.iter().map(|&i| pairs[i].clone()).collect();
        let stats = block_on(trainer.dpo_step(&batch, &dpo)).unwrap();
        first.get_or_insert(stats.loss);
        last = Some(stats.loss);
    }
    eprintln!(
        "{judge:?}: {} pairs, {} DPO steps, loss {:.4} -> {:.4}",
        pairs.len(),
        schedule.len(),
        first.unwrap(),
        last.unwrap()
    );
    let (after, named) = tool_accuracy(&trainer.inference_model(), tokenizer, docs);
    assert_eq!(
        named, 20,
        "{judge:?}: after DPO every step still names one tool"
    );
    Round {
        pairs: pairs.len(),
        before,
        after,
    }
}

#[test]
fn held_out_accuracy_moves_only_with_an_informative_judge() {
    let Some(tokenizer) = smollm2_tokenizer() else {
        return;
    };
    let started = std::time::Instant::now();
    let docs = tool_docs();
    let base = noisy_planner(&tokenizer, &docs);
    let (before, named) = tool_accuracy(&base, &tokenizer, &docs);
    eprintln!(
        "noisy planner: held-out tool accuracy {before:.2}, {named}/20 steps name one tool ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        named, 20,
        "the noisy planner writes a tool call for every query"
    );
    assert!(
        before <= 0.6,
        "the noisy planner is near chance, got {before}"
    );

    let none = round(Judge::AlwaysA, &base, &tokenizer, &docs, before);
    assert_eq!(none.pairs, 0, "a judge that always answers A gives no pair");

    let oracle = round(Judge::Oracle, &base, &tokenizer, &docs, before);
    eprintln!(
        "oracle judge: {} pairs, accuracy {:.2} -> {:.2} ({:.0} s)",
        oracle.pairs,
        oracle.before,
        oracle.after,
        started.elapsed().as_secs_f64()
    );
    let random = round(Judge::Random, &base, &tokenizer, &docs, before);
    eprintln!(
        "random judge: {} pairs, accuracy {:.2} -> {:.2} ({:.0} s)",
        random.pairs,
        random.before,
        random.after,
        started.elapsed().as_secs_f64()
    );
    assert!(
        oracle.pairs >= 20,
        "the oracle found {} pairs",
        oracle.pairs
    );
    assert!(
        oracle.after >= 0.9,
        "with an oracle judge held-out accuracy rises to 0.9 or more, got {} -> {}",
        oracle.before,
        oracle.after
    );
    // A coin agrees with itself across both orders half the time, so about half as many pairs.
    assert!(
        random.pairs >= 10,
        "the random judge found {} pairs",
        random.pairs
    );
    assert!(
        (random.after - random.before).abs() <= 0.15,
        "with a random judge held-out accuracy stays within 0.15, got {} -> {}",
        random.before,
        random.after
    );
}

/// The objective checks of mining's `--exec-signal` (psrlm-design.md §2.8) on the gold ToolBench
/// planner steps of the OOD train file: the spec measured 0.4 % of them naming an unlisted
/// `X_for_Y` tool (a check rejecting more than 1 % would steer mining away from steps like the
/// references); the "empty rationale" rule rejects exactly the gold steps whose text before
/// `Next:` has fewer than 3 words (the data has such steps, e.g. ` Next: caller.`), counted here
/// from the raw text; no gold step is an echo.
#[test]
fn gold_toolbench_planner_steps_pass_the_objective_checks() {
    let path =
        umi_tests::shared_data().join("alpha-umi-toolbench/ood-train/out_of_domain_train300.json");
    let conversations: Vec<umi_data::Conversation> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut failures: std::collections::BTreeMap<&str, usize> = Default::default();
    let (mut steps, mut short) = (0, 0);
    for (t, c) in conversations.iter().enumerate() {
        for point in umi_reward::gold_points(t, c) {
            steps += 1;
            let before = point.gold.split("Next:").next().unwrap_or("");
            short += usize::from(before.split_whitespace().count() < 3 || before.trim() == "none");
            if let Err(why) = umi_reward::check_planner_step(&point.gold, true, &point.tools) {
                *failures.entry(why.name()).or_default() += 1;
            }
        }
    }
    eprintln!("of {steps} gold planner steps: {failures:?}; {short} with under 3 words");
    assert!(steps > 1000, "{steps} planner steps");
    let unlisted = failures.get("unlisted_tool").copied().unwrap_or(0);
    assert!(
        (unlisted as f64) < 0.01 * steps as f64,
        "{unlisted} of {steps} gold steps name an unlisted tool"
    );
    assert_eq!(failures.get("empty").copied().unwrap_or(0), short);
    assert!(!failures.contains_key("echo") && !failures.contains_key("no_marker"));
}

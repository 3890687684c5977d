//! Judge training data (the paper's EFT set, built without a stronger model:
//! psrlm-design.md §2.9): at each gold planner decision point the gold step G is set against an
//! objectively worse step W made from it, and the pair is rendered as a judge prompt twice (G
//! as assistant A, then as B, so the labels are balanced) with a target that explains the
//! difference and gives G's letter. Synthetic negatives cost no model call:
//!
//! | kind | W | rule |
//! |---|---|---|
//! | `plan` | G with its `Next:` marker replaced | another decision |
//! | `hallucinated_name` | G with the listed `X_for_Y` tool it names renamed to `X_for_Z`, `Z` another trajectory's tool family; where no listed tool has a `_for_` family (umi's demo tools), the listed name's first word joined to another noun (`convert_units` → `convert_rates`) | names an unlisted tool |
//! | `echo` | the template's format line + G's marker | repeats the instructions |
//! | `loop` | the previous planner turn, verbatim, when it differs from G | repeats itself |

use std::collections::BTreeMap;

use crate::validity::{is_for_name, is_name_char};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use umi_data::conversation::{Conversation, Next, Speaker, Turn};
use umi_data::judge::{JudgeFormat, JudgeTarget, judge_input};
use umi_data::readers::Split;
use umi_data::{RoleSample, history};

/// How a worse step was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeKind {
    /// Another decision than G's.
    Plan,
    /// A tool that is not in the list.
    HallucinatedName,
    /// The prompt's format instruction instead of a plan.
    Echo,
    /// The previous planner step again.
    Loop,
}

impl NegativeKind {
    /// The name used in ids and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NegativeKind::Plan => "plan",
            NegativeKind::HallucinatedName => "hallucinated_name",
            NegativeKind::Echo => "echo",
            NegativeKind::Loop => "loop",
        }
    }
}

/// What an EFT row is (beside the [`RoleSample`] fields, which `umi train local
/// --extra-samples` reads as they are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EftMeta {
    /// `t{conversation}-d{decision}-{kind}-{A|B}`.
    pub id: String,
    /// The id without the position: both renderings of one pair.
    pub pair_id: String,
    /// How W was made.
    pub kind: NegativeKind,
    /// `synthetic` (sampled negatives are not made here).
    pub source: String,
    /// Where G stands: `A` or `B`.
    pub gold_position: String,
    /// The judge format the prompt and target use.
    pub judge_format: JudgeFormat,
    /// The judged role (`planner`).
    pub role: String,
}

/// One judge-training row: a role sample whose input is the judge prompt and whose target is the
/// judgment, plus what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EftRow {
    /// Tools, history, judge input (cue included), judgment.
    #[serde(flatten)]
    pub sample: RoleSample,
    /// Kind, position and ids.
    pub meta: EftMeta,
}

/// The planner template's format line, which a template echo repeats.
pub const FORMAT_LINE: &str =
    "The thought of the next step, followed by Next: caller or conclusion or give up.";

fn next_of(step: &str) -> Option<Next> {
    Next::detect(step)
}

fn reason(n: Next) -> &'static str {
    match n {
        Next::Caller => "still needs information that the available APIs can provide",
        Next::Conclusion => "has the information the user asked for in the observations",
        Next::GiveUp => "cannot be completed: the calls so far failed and no other API can help",
    }
}

fn verb(n: Next) -> &'static str {
    match n {
        Next::Caller => "call an API",
        Next::Conclusion => "answer the user",
        Next::GiveUp => "give up",
    }
}

/// Nouns a fabricated tool name ends with where the tools have no `_for_` families.
const FAKE_NOUNS: [&str; 8] = [
    "rates", "records", "details", "history", "schedule", "summary", "status", "lookup",
];

/// The identifier-like words of `text` (runs of [`is_name_char`]), in order.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_name_char(c))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A name like `name` that is not in `listed`: its first word (up to the first `_`) joined to
/// one of [`FAKE_NOUNS`], picked by `seed` (the next one that is free), e.g. `convert_units` →
/// `convert_rates`. `None` when every such name is listed.
fn fake_plain_name(name: &str, listed: &[&str], seed: u64) -> Option<String> {
    let head = name.split('_').next().unwrap_or(name);
    (0..FAKE_NOUNS.len())
        .map(|k| {
            format!(
                "{head}_{}",
                FAKE_NOUNS[(seed as usize + k) % FAKE_NOUNS.len()]
            )
        })
        .find(|fake| fake != name && !listed.contains(&fake.as_str()))
}

/// `X_for_Y` tool names in `text`, in order of appearance.
fn for_names(text: &str) -> Vec<&str> {
    words(text).into_iter().filter(|w| is_for_name(w)).collect()
}

/// The `_for_` families (the part after `_for_`) of the tools in `tools`.
pub fn tool_families(tools: &[Map<String, Value>]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| umi_data::tool_name(t))
        .filter_map(|n| n.split_once("_for_").map(|(_, f)| f.to_string()))
        .collect()
}

/// G with the listed tool `name` renamed to the unlisted `fake` (whole words only), and its
/// explanation.
fn hallucinated(gold: &str, name: &str, fake: &str) -> (NegativeKind, String, String) {
    let mut renamed = String::with_capacity(gold.len() + fake.len());
    let mut rest = gold;
    let word = |c: Option<char>| c.is_some_and(is_name_char);
    while let Some(at) = rest.find(name) {
        let (before, after) = (&rest[..at], &rest[at + name.len()..]);
        renamed.push_str(before);
        if word(before.chars().next_back()) || word(after.chars().next()) {
            renamed.push_str(name);
        } else {
            renamed.push_str(fake);
        }
        rest = after;
    }
    renamed.push_str(rest);
    (
        NegativeKind::HallucinatedName,
        renamed,
        format!(
            "Assistant {{W}} names `{fake}`, which is not in the list of available APIs; assistant {{G}} only uses available APIs."
        ),
    )
}

/// The synthetic worse steps for gold step `gold` after `turns`, as `(kind, W, explanation
/// with {G} and {W} for the letters)`, in the table's order; `families` are tool families of
/// the whole data set (for a fabricated name outside this trajectory's tools).
pub fn synthetic_negatives(
    turns: &[Turn],
    gold: &str,
    tools: &[Map<String, Value>],
    families: &[String],
    seed: u64,
) -> Vec<(NegativeKind, String, String)> {
    let Some(g) = next_of(gold) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut others = [Next::Caller, Next::Conclusion, Next::GiveUp]
        .into_iter()
        .filter(|&n| n != g)
        .collect::<Vec<_>>();
    umi_data::batch::seeded_shuffle(&mut others, seed);
    let n = others[0];
    out.push((
        NegativeKind::Plan,
        gold.replacen(g.marker(), n.marker(), 1),
        format!(
            "At this point the task {}, so the right decision is to {}. Assistant {{G}} decides to {}; assistant {{W}} decides to {} instead.",
            reason(g),
            verb(g),
            verb(g),
            verb(n)
        ),
    ));
    let listed: Vec<&str> = tools
        .iter()
        .filter_map(|t| umi_data::tool_name(t))
        .collect();
    let own = tool_families(tools);
    if let Some(name) = for_names(gold).into_iter().find(|n| listed.contains(n)) {
        let mut candidates: Vec<&String> = families.iter().filter(|f| !own.contains(f)).collect();
        candidates.sort();
        candidates.dedup();
        if !candidates.is_empty() {
            let prefix = &name[..name.find("_for_").expect("a _for_ name")];
            let pick = candidates[(seed % candidates.len() as u64) as usize];
            let fake = format!("{prefix}_for_{pick}");
            if !listed.contains(&fake.as_str()) {
                out.push(hallucinated(gold, name, &fake));
            }
        }
    } else if own.is_empty()
        && let Some(name) = words(gold).into_iter().find(|w| listed.contains(w))
        && let Some(fake) = fake_plain_name(name, &listed, seed)
    {
        out.push(hallucinated(gold, name, &fake));
    }
    out.push((
        NegativeKind::Echo,
        format!("{FORMAT_LINE} {}", g.marker()),
        "Assistant {W} repeats the instructions instead of planning a step; assistant {G} gives a concrete plan.".into(),
    ));
    if let Some(previous) = turns.iter().rev().find(|t| t.from == Speaker::Assistant)
        && previous.value != gold
    {
        out.push((
            NegativeKind::Loop,
            previous.value.clone(),
            "Assistant {W} repeats its previous step word for word; assistant {G} moves the task forward.".into(),
        ));
    }
    out
}

/// Settings of [`eft_rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EftConfig {
    /// Judge format of prompts and targets.
    pub format: JudgeFormat,
    /// Most worse steps per decision point (each gives two rows).
    pub max_negatives_per_point: usize,
    /// Seed of the choices (kinds, replacement markers and names).
    pub seed: u64,
}

/// The EFT rows of `conversations` (each with its index in the data set, used in ids): for
/// every gold planner decision point, up to `max_negatives_per_point` of its
/// [`synthetic_negatives`] (a seeded choice), each rendered with G as A and as B. The target is
/// `{explanation} [[{G}]]` (explain) or `[[{G}]] {explanation}` (verdict).
pub fn eft_rows(
    conversations: &[(usize, &Conversation)],
    families: &[String],
    config: &EftConfig,
) -> Vec<EftRow> {
    let mut rows = Vec::new();
    for &(t, conversation) in conversations {
        let turns = &conversation.conversations;
        let mut d = 0;
        for (i, turn) in turns.iter().enumerate() {
            if turn.from != Speaker::Assistant || next_of(&turn.value).is_none() {
                continue;
            }
            let before = &turns[..i];
            let seed = config
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(((t as u64) << 16) | d as u64);
            let mut negatives =
                synthetic_negatives(before, &turn.value, &conversation.tools, families, seed);
            umi_data::batch::seeded_shuffle(&mut negatives, seed);
            negatives.truncate(config.max_negatives_per_point);
            let hist = history(before);
            for (kind, worse, explanation) in negatives {
                let pair_id = format!("t{t:04}-d{d:02}-{}", kind.as_str());
                for gold_position in ["A", "B"] {
                    let (g, w) = if gold_position == "A" {
                        ("A", "B")
                    } else {
                        ("B", "A")
                    };
                    let (a, b) = if gold_position == "A" {
                        (turn.value.as_str(), worse.as_str())
                    } else {
                        (worse.as_str(), turn.value.as_str())
                    };
                    let judgment = explanation.replace("{G}", g).replace("{W}", w);
                    let target = match config.format {
                        JudgeFormat::Explain => format!("{judgment} [[{g}]]"),
                        JudgeFormat::Verdict => format!("[[{g}]] {judgment}"),
                    };
                    rows.push(EftRow {
                        sample: RoleSample {
                            tools: conversation.tools.clone(),
                            history: before.to_vec(),
                            input: judge_input(
                                JudgeTarget::Planner,
                                config.format,
                                &conversation.tools,
                                &hist,
                                None,
                                a,
                                b,
                            ),
                            target,
                        },
                        meta: EftMeta {
                            id: format!("{pair_id}-{gold_position}"),
                            pair_id: pair_id.clone(),
                            kind,
                            source: "synthetic".into(),
                            gold_position: gold_position.into(),
                            judge_format: config.format,
                            role: "planner".into(),
                        },
                    });
                }
            }
            d += 1;
        }
    }
    rows
}

/// The EFT rows of one split of a data set (`umi reward eft`, psrlm-design.md §2.9).
#[derive(Debug, Clone, PartialEq)]
pub struct EftSet {
    /// Conversations in the split.
    pub conversations: usize,
    /// Their rows, in order.
    pub rows: Vec<EftRow>,
}

impl EftSet {
    /// The [`eft_rows`] of the `split` records of `conversations` (period `dev_every`), ids
    /// numbered by the records' places in the whole data set. Fabricated tool names come from
    /// the families of every record, so a dev row's fake name may be a train trajectory's family:
    /// it is still absent from that row's tool list.
    pub fn new(
        conversations: &[Conversation],
        split: Split,
        dev_every: usize,
        config: &EftConfig,
    ) -> Self {
        let families: Vec<String> = conversations
            .iter()
            .flat_map(|c| tool_families(&c.tools))
            .collect();
        let kept: Vec<(usize, &Conversation)> = conversations
            .iter()
            .enumerate()
            .filter(|(i, _)| split.keeps(*i, dev_every))
            .collect();
        Self {
            conversations: kept.len(),
            rows: eft_rows(&kept, &families, config),
        }
    }

    /// Rows per kind of worse step.
    pub fn rows_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut by_kind = BTreeMap::new();
        for row in &self.rows {
            *by_kind.entry(row.meta.kind.as_str()).or_default() += 1;
        }
        by_kind
    }

    /// The rows as JSON lines (eft.jsonl: role samples with their `meta`, which `umi train local
    /// --extra-samples` reads).
    ///
    /// # Errors
    ///
    /// When a row cannot be written as JSON.
    pub fn to_jsonl(&self) -> Result<String, serde_json::Error> {
        let mut out = String::new();
        for row in &self.rows {
            out.push_str(&serde_json::to_string(row)?);
            out.push('\n');
        }
        Ok(out)
    }

    /// The rows as TRL prompt/completion JSON lines (eft_trl.jsonl,
    /// [`umi_data::batch::prompt_completion`]), each completion ending in `eos_text`.
    ///
    /// # Errors
    ///
    /// When a row cannot be written as JSON.
    pub fn to_trl_jsonl(&self, eos_text: &str) -> Result<String, serde_json::Error> {
        let mut out = String::new();
        for row in &self.rows {
            let record = umi_data::batch::prompt_completion(&row.sample, eos_text);
            out.push_str(&serde_json::to_string(&record)?);
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umi_data::judge::parse_verdict;

    fn conversation() -> Conversation {
        let tool = |name: &str| {
            serde_json::json!({"Name": name, "function": "does it", "input": {"q": "string"}})
                .as_object()
                .unwrap()
                .clone()
        };
        Conversation {
            tools: vec![tool("search_for_books"), tool("weather_for_sky")],
            instruction: "Find a book.".into(),
            conversations: vec![
                Turn::new(Speaker::User, "Find a book."),
                Turn::new(
                    Speaker::Assistant,
                    "I will call search_for_books with the title. Next: caller.",
                ),
                Turn::new(
                    Speaker::Caller,
                    "Action: search_for_books\nAction Input: {\"q\": \"x\"}",
                ),
                Turn::new(
                    Speaker::Observation,
                    "{\"error\": \"\", \"response\": \"found\"}",
                ),
                Turn::new(Speaker::Assistant, "The book was found. Next: conclusion."),
                Turn::new(Speaker::Conclusion, "Found it."),
            ],
        }
    }

    #[test]
    fn every_kind_is_objectively_worse_and_rendered_in_both_orders() {
        let c = conversation();
        let turns = &c.conversations;
        let families = vec!["books".to_string(), "maps".to_string()];
        let first = synthetic_negatives(&turns[..1], &turns[1].value, &c.tools, &families, 3);
        let kinds: Vec<NegativeKind> = first.iter().map(|n| n.0).collect();
        assert_eq!(
            kinds,
            [
                NegativeKind::Plan,
                NegativeKind::HallucinatedName,
                NegativeKind::Echo
            ]
        );
        assert!(!first[0].1.contains("Next: caller."));
        assert!(first[1].1.contains("search_for_maps") && !first[1].1.contains("search_for_books"));
        assert_eq!(first[2].1, format!("{FORMAT_LINE} Next: caller."));
        // the objective checks of mining (§2.8) pass the gold step and catch exactly the
        // negatives they can see: an unlisted name and an echo, not a wrong decision
        use crate::validity::{InvalidStep, check_planner_step};
        assert_eq!(check_planner_step(&turns[1].value, true, &c.tools), Ok(()));
        assert_eq!(check_planner_step(&first[0].1, true, &c.tools), Ok(()));
        assert_eq!(
            check_planner_step(&first[1].1, true, &c.tools),
            Err(InvalidStep::UnlistedTool("search_for_maps".into()))
        );
        assert_eq!(
            check_planner_step(&first[2].1, true, &c.tools),
            Err(InvalidStep::Echo)
        );
        let second = synthetic_negatives(&turns[..4], &turns[4].value, &c.tools, &families, 3);
        assert!(
            second
                .iter()
                .any(|n| n.0 == NegativeKind::Loop && n.1 == turns[1].value)
        );

        let config = EftConfig {
            format: JudgeFormat::Explain,
            max_negatives_per_point: 2,
            seed: 42,
        };
        let rows = eft_rows(&[(7, &c)], &families, &config);
        assert_eq!(rows.len(), 2 * 2 * 2, "2 points × 2 negatives × 2 orders");
        for pair in rows.chunks(2) {
            assert_eq!(pair[0].meta.pair_id, pair[1].meta.pair_id);
            assert!(pair[0].meta.id.starts_with("t0007-d0"));
            for row in pair {
                let want = if row.meta.gold_position == "A" {
                    umi_data::judge::Verdict::A
                } else {
                    umi_data::judge::Verdict::B
                };
                assert_eq!(
                    parse_verdict(&row.sample.target),
                    want,
                    "{}",
                    row.sample.target
                );
                assert!(row.sample.input.ends_with(" judge: "));
            }
            // the two renderings swap the steps' blocks
            assert_ne!(pair[0].sample.input, pair[1].sample.input);
        }
        let verdict = eft_rows(
            &[(7, &c)],
            &families,
            &EftConfig {
                format: JudgeFormat::Verdict,
                ..config
            },
        );
        assert!(verdict.iter().all(|r| r.sample.target.starts_with("[[")));
        assert_eq!(
            eft_rows(&[(7, &c)], &families, &config),
            rows,
            "the same seed gives the same rows"
        );
        // rows read back as plain role samples (what `umi train local --extra-samples` reads)
        let line = serde_json::to_string(&rows[0]).unwrap();
        let sample: RoleSample = serde_json::from_str(&line).unwrap();
        assert_eq!(sample, rows[0].sample);
    }

    #[test]
    fn tools_without_families_get_a_fabricated_plain_name() {
        // umi's demo tools: no `X_for_Y` names, so the fake keeps the first word of the named tool
        let tool = |name: &str| {
            serde_json::json!({"Name": name, "function": "does it"})
                .as_object()
                .unwrap()
                .clone()
        };
        let tools = vec![
            tool("convert_units"),
            tool("convert_rates"),
            tool("weekday"),
        ];
        let gold =
            "I need 3 km in mi, so I call convert_units (not convert_units_v2). Next: caller.";
        let turns = [Turn::new(Speaker::User, "3 km in miles?")];
        let negatives = synthetic_negatives(&turns, gold, &tools, &[], 0);
        let fake = negatives
            .iter()
            .find(|n| n.0 == NegativeKind::HallucinatedName)
            .expect("a hallucinated-name negative");
        // seed 0 picks "rates" first, which is listed, so the next noun
        assert_eq!(
            fake.1,
            "I need 3 km in mi, so I call convert_records (not convert_units_v2). Next: caller."
        );
        assert!(fake.2.contains("`convert_records`"));
        // a step naming no listed tool, or a tool set with families, gets none of this kind
        let none = synthetic_negatives(&turns, "I answer now. Next: conclusion.", &tools, &[], 0);
        assert!(none.iter().all(|n| n.0 != NegativeKind::HallucinatedName));
        let mut mixed = tools.clone();
        mixed.push(tool("search_for_books"));
        let families = vec!["books".to_string()];
        let mixed = synthetic_negatives(&turns, gold, &mixed, &families, 0);
        assert!(mixed.iter().all(|n| n.0 != NegativeKind::HallucinatedName));
    }
}

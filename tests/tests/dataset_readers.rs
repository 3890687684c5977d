//! The API-Bank and ToolAlpaca readers against the Python prototype they port
//! (`assets/reference/apibank_toolalpaca.py`, run on `../shared/data`): per file kind the same
//! record counts and skips, the same conversations (the first records verbatim, every record by
//! hash, and the option variants by hash), and references that score perfectly against
//! themselves with umi-eval.

use serde_json::Value;
use umi_data::readers::ReadReport;
use umi_data::readers::api_bank::{ApiBankOptions, RationaleMode, read_api_bank_with};
use umi_data::readers::toolalpaca::read_toolalpaca;
use umi_data::{Conversation, Speaker, python_json_dumps};
use umi_eval::{decision_points, evaluate};
use umi_tests::{assets, shared_data};

/// (reference file in `assets/reference/apibank_toolalpaca/`, the prototype's kind, the input
/// under the shared data).
const KINDS: [(&str, &str, &str); 8] = [
    (
        "level-1-given-desc",
        "apibank/level-1-given-desc",
        "api-bank/lv1-lv2-samples/level-1-given-desc",
    ),
    (
        "level-2-toolsearcher",
        "apibank/level-2-toolsearcher",
        "api-bank/lv1-lv2-samples/level-2-toolsearcher",
    ),
    (
        "lv3-train",
        "apibank/lv3-train",
        "api-bank/training-data/lv3-train.json",
    ),
    (
        "test-level-1-api",
        "apibank/test-level-1-api.json",
        "api-bank/test-data/level-1-api.json",
    ),
    (
        "test-level-2-api",
        "apibank/test-level-2-api.json",
        "api-bank/test-data/level-2-api.json",
    ),
    (
        "test-level-3",
        "apibank/test-level-3.json",
        "api-bank/test-data/level-3.json",
    ),
    (
        "eval_simulated",
        "toolalpaca/eval_simulated.json",
        "toolalpaca-eval/eval_simulated.json",
    ),
    (
        "eval_real",
        "toolalpaca/eval_real.json",
        "toolalpaca-eval/eval_real.json",
    ),
];

fn read_kind(input: &str, options: &ApiBankOptions) -> (Vec<Conversation>, ReadReport) {
    let path = shared_data().join(input);
    let read = if input.starts_with("toolalpaca") {
        read_toolalpaca(&path)
    } else {
        read_api_bank_with(&path, options)
    };
    read.unwrap_or_else(|e| panic!("{input}: {e}"))
}

fn reference(file: &str) -> Value {
    let path = assets().join(format!("reference/apibank_toolalpaca/{file}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The record as the prototype hashes it: `json.dumps` of `{tools, instruction, conversations}`.
fn dump(c: &Conversation) -> String {
    python_json_dumps(&serde_json::to_value(c).unwrap())
}

fn fnv1a64(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

#[test]
fn counts_and_skips_match_the_prototype() {
    // why records are skipped, per kind (the prototype's summary)
    let reasons: [&[(&str, usize)]; 8] = [
        &[("empty file", 1), ("inline", 2)],
        &[("inline", 3)],
        &[("orphan", 3)],
        &[("exact duplicate", 10)],
        &[("exact duplicate", 16)],
        &[],
        &[("getDetails", 8)],
        &[("not in Function_Description", 6)],
    ];
    for ((file, kind, input), reasons) in KINDS.into_iter().zip(reasons) {
        let (convs, report) = read_kind(input, &ApiBankOptions::default());
        let want = reference(file);
        assert_eq!(want["kind"], kind);
        let got = (report.records, report.kept, report.skipped.len());
        let counts = ["read", "converted", "skipped"].map(|k| want[k].as_u64().unwrap() as usize);
        assert_eq!(got, counts.into(), "{kind}: records, kept, skipped");
        assert_eq!(convs.len(), report.kept);
        for &(reason, count) in reasons {
            let n = report
                .skipped
                .iter()
                .filter(|s| s.reason.contains(reason))
                .count();
            assert_eq!(n, count, "{kind}: skipped for {reason:?}: {report:#?}");
        }
        let explained: usize = reasons.iter().map(|r| r.1).sum();
        assert_eq!(report.skipped.len(), explained, "{kind}: {report:#?}");
    }

    // where: the dialogue file and its row, the lv3-train sample
    let (_, report) = read_kind(KINDS[0].2, &ApiBankOptions::default());
    let at: Vec<(String, usize)> = report
        .skipped
        .iter()
        .map(|s| {
            let name = s.file.file_name().unwrap().to_string_lossy();
            (name.into_owned(), s.index)
        })
        .collect();
    assert_eq!(
        at,
        [
            ("QueryStock-OpenBankAccount-level-2-1.jsonl".to_string(), 1),
            (
                "RegisterUser-ForgotPassword-DeleteAccount-GetUserToken-level-2-1.jsonl".into(),
                7
            ),
            ("SearchEngine-level-1-1.jsonl".into(), 0),
        ]
    );
    let (_, report) = read_kind(KINDS[2].2, &ApiBankOptions::default());
    let orphans: Vec<usize> = report.skipped.iter().map(|s| s.index).collect();
    assert_eq!(orphans, [506, 507, 536]);
}

#[test]
fn conversations_match_the_prototype() {
    for (file, kind, input) in KINDS {
        let (convs, _) = read_kind(input, &ApiBankOptions::default());
        let want = reference(file);
        let first: Vec<Conversation> = serde_json::from_value(want["first"].clone()).unwrap();
        assert!(!first.is_empty());
        for (i, (got, want)) in convs.iter().zip(&first).enumerate() {
            assert_eq!(got, want, "{kind}: record {i}");
        }
        let hashes: Vec<&str> = want["fnv1a64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(convs.len(), hashes.len(), "{kind}");
        for (i, (c, hash)) in convs.iter().zip(hashes).enumerate() {
            assert_eq!(
                fnv1a64(&dump(c)),
                hash,
                "{kind}: record {i} differs: {}",
                dump(c)
            );
        }
    }
}

#[test]
fn option_variants_match_the_prototype() {
    let variants = reference("variants");
    let narration = ApiBankOptions {
        rationale: RationaleMode::Narration,
        ..Default::default()
    };
    let drop = ApiBankOptions {
        keep_toolsearcher: false,
        ..Default::default()
    };
    for (name, options) in [
        ("rationale=narration", narration),
        ("toolsearcher=drop", drop),
    ] {
        for (_, kind, input) in KINDS.into_iter().filter(|k| k.1.starts_with("apibank")) {
            let (convs, _) = read_kind(input, &options);
            let want = &variants[name][kind];
            assert_eq!(convs.len() as u64, want["converted"], "{name} {kind}");
            let dumps: Vec<String> = convs.iter().map(dump).collect();
            assert_eq!(fnv1a64(&dumps.join("\n")), want["fnv1a64"], "{name} {kind}");
        }
    }
}

#[test]
fn references_score_perfectly_against_themselves() {
    // planner decisions per kind (the prototype's planner role samples)
    let decisions = [1118, 225, 1242, 1497, 302, 295, 92, 108];
    for ((_, kind, input), decisions) in KINDS.into_iter().zip(decisions) {
        let (convs, _) = read_kind(input, &ApiBankOptions::default());
        let mut points = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            let mine = decision_points(c);
            assert!(!mine.is_empty(), "{kind}: record {i} has no decision point");
            if kind.contains("-api.json") || kind.starts_with("toolalpaca") {
                // the scored gold call ends the record
                assert_eq!(c.conversations.last().unwrap().from, Speaker::Caller);
            }
            points.extend(mine);
        }
        assert_eq!(points.len(), decisions, "{kind}");
        let report = evaluate(points.iter().map(|p| (p, p.reference.as_str())));
        assert_eq!(report.samples, decisions);
        assert_eq!(
            (report.plan_em, report.action_em, report.hallucination_rate),
            (1.0, 1.0, 0.0),
            "{kind}: {report:?}"
        );
        assert_eq!(report.argument_f1, 1.0, "{kind}: {report:?}");
    }
}

/// Issue 15, item 11: one record that only Python's `json.load` reads (here a `NaN`) is skipped
/// with its reason; the rest of a ToolAlpaca or API-Bank file still converts.
#[test]
fn a_nan_in_one_record_skips_that_record_not_the_file() {
    let dir = std::env::temp_dir().join(format!("umi-nan-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = ApiBankOptions::default();
    for (input, bad) in [
        ("toolalpaca-eval/eval_simulated.json", 1usize),
        ("api-bank/training-data/lv3-train.json", 3),
    ] {
        let text = std::fs::read_to_string(shared_data().join(input)).unwrap();
        let records: Vec<Value> = serde_json::from_str(&text).unwrap();
        let write = |name: &str, items: Vec<String>| {
            let path = dir.join(name);
            std::fs::write(&path, format!("[\n{}\n]", items.join(",\n"))).unwrap();
            path
        };
        let json = |v: &Value| serde_json::to_string(v).unwrap();
        let read = |path: &std::path::Path| {
            if input.starts_with("toolalpaca") {
                read_toolalpaca(path)
            } else {
                read_api_bank_with(path, &options)
            }
            .unwrap_or_else(|e| panic!("{input}: {e}"))
        };
        let (whole, whole_report) = read(&shared_data().join(input));
        // the bad record with one value replaced by NaN, which serde_json rejects
        let mut broken = json(&records[bad]);
        let at = broken.find("\":\"").unwrap() + 2;
        broken.insert_str(at, "NaN, \"was\":");
        assert!(serde_json::from_str::<Value>(&broken).is_err());
        let items: Vec<String> = records
            .iter()
            .enumerate()
            .map(|(i, r)| if i == bad { broken.clone() } else { json(r) })
            .collect();
        let (got, report) = read(&write("with-nan.json", items));
        let reason = report
            .skipped
            .iter()
            .find(|s| s.reason.contains("NaN"))
            .unwrap_or_else(|| panic!("{input}: no skip names the NaN: {report:?}"));
        assert!(
            reason.reason.contains(&bad.to_string()),
            "{input}: {reason}"
        );
        assert!(!got.is_empty(), "{input}: the other records still convert");
        if input.starts_with("toolalpaca") {
            // APIs convert independently: exactly the bad API's conversations are missing
            let (alone, _) = read(&write("alone.json", vec![json(&records[bad])]));
            assert!(
                !alone.is_empty(),
                "pick an API with convertible instructions"
            );
            assert_eq!(got.len(), whole.len() - alone.len(), "{input}");
        } else {
            // lv3-train records are steps joined into conversations: one step fewer loses at
            // most its own conversation
            assert!(
                got.len() <= whole.len() && got.len() + 1 >= whole.len(),
                "{input}: {} of {}",
                got.len(),
                whole.len()
            );
            assert_eq!(report.records, whole_report.records, "{input}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

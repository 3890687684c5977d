//! Unit tests of `generate`: the sampler (greedy, seeded, top-p against a full sort, bad settings) and the streamed text.

use super::*;

#[test]
fn greedy_is_argmax_and_sampling_repeats_with_a_seed() {
    let logits = [0.1, 2.0, -1.0, 1.9];
    let mut greedy = Sampler::new(&GenerationConfig::default()).unwrap();
    assert_eq!(greedy.sample(&logits), 1);
    let config = GenerationConfig {
        temperature: 1.0,
        top_p: 0.9,
        seed: 7,
        ..Default::default()
    };
    let draws = |c: &GenerationConfig| {
        let mut s = Sampler::new(c).unwrap();
        (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
    };
    let a = draws(&config);
    assert_eq!(a, draws(&config));
    // top-p 0.9 keeps ids 1 and 3 (cumulative 0.475, 0.905), never 0 or 2
    assert!(a.iter().all(|&t| t == 1 || t == 3), "{a:?}");
    assert!(a.contains(&1) && a.contains(&3));
}

/// The draws equal `assets/reference/sampler_draws.py`'s independent Python sampler: the
/// stream is splitmix64, the same on every platform (wasm32 included).
#[test]
fn sampled_draws_equal_the_reference_on_every_platform() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/reference/sampler_draws.json"
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let logits: Vec<f32> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let config = GenerationConfig {
            temperature: case["temperature"].as_f64().unwrap(),
            top_p: case["top_p"].as_f64().unwrap(),
            seed: case["seed"].as_u64().unwrap(),
            ..Default::default()
        };
        let mut sampler = Sampler::new(&config).unwrap();
        let got: Vec<u64> = (0..50)
            .map(|_| u64::from(sampler.sample(&logits)))
            .collect();
        let want: Vec<u64> = case["draws"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "seed {}", config.seed);
    }
}

/// The nucleus found among the most probable ids equals the one of a full stable sort (the
/// sampler as first written, kept here as the reference), ties and wide nuclei included.
#[test]
fn the_partial_nucleus_search_equals_a_full_sort() {
    fn full_sort(logits: &[f32], temperature: f64, top_p: f64, u: f64) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l as f64 - max) / temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= top_p {
                cut = i + 1;
                break;
            }
        }
        probs.truncate(cut);
        let mass: f64 = probs.iter().map(|p| p.1).sum();
        let mut r = u * mass;
        for (id, p) in &probs {
            r -= p;
            if r <= 0.0 {
                return *id;
            }
        }
        probs.last().map(|p| p.0).unwrap_or(0)
    }
    let mut rng = crate::rng::SplitMix64::new(3, "logits");
    for (vocab, levels, temperature, top_p) in [
        (5000, 0, 0.5, 0.95),  // peaked: a few ids
        (5000, 4, 1.0, 0.9),   // four distinct values: ties everywhere
        (3000, 0, 50.0, 0.95), // nearly flat: the nucleus spans most of the vocabulary
        (3000, 0, 1.0, 1.0),
        // the ids within ln 1024 of the top hold less than 0.9999 of the mass: the search
        // lowers its threshold
        (5000, 0, 1.0, 0.9999),
    ] {
        let logits: Vec<f32> = (0..vocab)
            .map(|_| {
                let v = rng.unit() * 12.0;
                (if levels > 0 { (v / 3.0).floor() } else { v }) as f32
            })
            .collect();
        for seed in 0..40 {
            let config = GenerationConfig {
                temperature,
                top_p,
                seed,
                ..Default::default()
            };
            let mut sampler = Sampler::new(&config).unwrap();
            let mut twin = crate::rng::SplitMix64::new(seed, "sampler");
            for _ in 0..5 {
                let want = full_sort(&logits, temperature, top_p, twin.unit());
                assert_eq!(
                    sampler.sample(&logits),
                    want,
                    "{vocab} {levels} {temperature} {top_p}"
                );
            }
        }
    }
}

#[test]
fn bad_settings_are_errors() {
    let bad = GenerationConfig {
        top_p: 0.0,
        ..Default::default()
    };
    assert!(
        Sampler::new(&bad)
            .unwrap_err()
            .to_string()
            .contains("top_p")
    );
    let bad = GenerationConfig {
        temperature: -1.0,
        ..Default::default()
    };
    assert!(
        Sampler::new(&bad)
            .unwrap_err()
            .to_string()
            .contains("temperature")
    );
}

#[test]
fn text_stream_holds_back_incomplete_characters_and_stop_prefixes() {
    let mut s = TextStream::new(&["Next:".to_string()]);
    assert_eq!(s.push("Hel"), "Hel");
    assert_eq!(s.push("Hello \u{FFFD}"), "");
    assert_eq!(s.push("Hello 🙂"), "lo 🙂");
    assert_eq!(s.push("Hello 🙂 Ne"), " ");
    assert_eq!(s.push("Hello 🙂 New"), "New");
    assert_eq!(s.push("Hello 🙂 New Nex"), " ");
    assert_eq!(s.finish("Hello 🙂 New "), "");
    assert_eq!(s.text(), "Hello 🙂 New ");
}

//! ROUGE-L F against the Python `rouge` package (`assets/reference/rouge_l.py` wrote the fixture).

use umi_eval::rouge_l_f;

#[test]
fn rouge_l_matches_the_python_package() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/reference/rouge_l.json"
    );
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 48);
    for case in cases {
        let (hyp, reference) = (case["hyp"].as_str().unwrap(), case["ref"].as_str().unwrap());
        let want = case["f"].as_f64().unwrap();
        let got = rouge_l_f(hyp, reference).unwrap();
        assert!(
            (got - want).abs() < 1e-12,
            "{hyp:?} vs {reference:?}: {got} != {want}"
        );
    }
    assert_eq!(rouge_l_f("", "x"), None);
}

//! ROUGE-L F as the Python `rouge` package (pltrdy/rouge 1.0.1) computes it, which α-UMi's
//! evaluator uses: texts split into sentences on `.`, whitespace normalised, summary-level
//! union-LCS over *sets* of words (its default `exclusive=True`), `F = 2PR / (P + R + 1e-8)`.

use std::collections::HashSet;

fn sentences(text: &str) -> Vec<String> {
    text.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Words of an LCS of `x` and `y`, reconstructed with the package's tie-breaking (move up when
/// the cell above is strictly larger, else left).
fn lcs_words<'a>(x: &[&'a str], y: &[&'a str]) -> Vec<&'a str> {
    let (n, m) = (x.len(), y.len());
    let mut table = vec![vec![0usize; m + 1]; n + 1];
    for i in 1..=n {
        for j in 1..=m {
            table[i][j] = if x[i - 1] == y[j - 1] {
                table[i - 1][j - 1] + 1
            } else {
                table[i - 1][j].max(table[i][j - 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (n, m, Vec::new());
    while i > 0 && j > 0 {
        if x[i - 1] == y[j - 1] {
            out.push(x[i - 1]);
            i -= 1;
            j -= 1;
        } else if table[i - 1][j] > table[i][j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out
}

/// ROUGE-L F of `hypothesis` against `reference`, or `None` where the package raises (a text
/// with no sentence, e.g. empty).
pub fn rouge_l_f(hypothesis: &str, reference: &str) -> Option<f64> {
    let (hyp, refs) = (sentences(hypothesis), sentences(reference));
    if hyp.is_empty() || refs.is_empty() {
        return None;
    }
    let words = |ss: &[String]| -> HashSet<String> {
        ss.iter()
            .flat_map(|s| s.split(' ').map(str::to_string))
            .collect()
    };
    let (m, n) = (words(&refs).len() as f64, words(&hyp).len() as f64);
    let mut union: HashSet<&str> = HashSet::new();
    for r in &refs {
        let r_words: Vec<&str> = r.split(' ').collect();
        for h in &hyp {
            let h_words: Vec<&str> = h.split(' ').collect();
            union.extend(lcs_words(&r_words, &h_words));
        }
    }
    let llcs = union.len() as f64;
    let (r, p) = (llcs / m, llcs / n);
    Some(2.0 * (p * r / (p + r + 1e-8)))
}

"""Reference ROUGE-L F values from the Python `rouge` package (pltrdy/rouge 1.0.1), the one
alpha-UMi's evaluate-multi_agent.py uses: Rouge().get_scores(hyp, ref, avg=True)["rouge-l"]["f"].

Run: python3 -m pip install rouge==1.0.1 && python3 assets/reference/rouge_l.py
Writes assets/reference/rouge_l.json: [{"hyp", "ref", "f"}] for hand-picked and random pairs
(random ones from a small vocabulary so words repeat and LCS ties happen).
"""
import json
import random
from pathlib import Path

from rouge import Rouge

pairs = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "a dog sat on a log"),
    ("Paris is the capital. It is in France.", "The capital of France is Paris."),
    ("none", "The answer is 42."),
    ("a b c d e. f g", "b a d c. g f e"),
    ("x  y\tz .  . w", "w x. y z"),
    ("repeat repeat repeat", "repeat once"),
    ("Café au lait. Crème brûlée!", "crème brûlée and café"),
]
rng = random.Random(0)
vocab = "a b c d e f g h the of to".split()
for _ in range(40):
    def text():
        sentences = []
        for _ in range(rng.randint(1, 3)):
            sentences.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))))
        return ". ".join(sentences)
    pairs.append((text(), text()))

rouge = Rouge()
out = [{"hyp": h, "ref": r, "f": rouge.get_scores(h, r, avg=True)["rouge-l"]["f"]} for h, r in pairs]
Path(__file__).with_name("rouge_l.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
print(f"wrote {len(out)} pairs")

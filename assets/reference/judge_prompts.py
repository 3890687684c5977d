"""Golden judge prompts: cuts the planner explain-format template out of psrlm-design.md §2.5.1 and applies the
changes that section lists in words (the verdict format's replaced sentences; the caller frame's object, definition,
criteria, thought block and block titles), so umi's `judge_template` is checked against the document, not against
itself.

Rerun (from the repository root, with ../shared beside it):
    python3 assets/reference/judge_prompts.py
Writes assets/reference/judge_prompts.txt: for each of planner explain, planner verdict, caller explain, caller
verdict, a line "===== {name} =====", the template (placeholders {api_list}, {history}, {thought}, {step_a},
{step_b} unfilled), and a newline.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "..", "shared", "docs", "psrlm-design.md")


def main():
    text = open(SPEC, encoding="utf-8").read()
    section = text[text.index("**Planner judge, `explain` format**") :]
    planner_explain = re.search(r"```\n(.*?)\n```", section, re.S).group(1)

    explain_sentences = (
        "You should compare the two steps and provide a short explanation. ",
        'After providing your explanation, output your final verdict by strictly following this format: "[[A]]" if '
        'assistant A is better, and "[[B]]" if assistant B is better.',
    )
    verdict_sentence = re.search(r"replaced by:\n`(.*?)`", section, re.S).group(1)
    assert all(s in planner_explain for s in explain_sentences)

    def verdict(t):
        return t.replace(explain_sentences[0], "").replace(explain_sentences[1], verdict_sentence)

    caller = section[section.index("**Caller judge**") :]
    caller_object = re.search(r'object is "(.*?)";', caller, re.S).group(1).replace("\n  ", " ")
    caller_definition = re.search(r"definition sentence is: `(.*?)`;", caller, re.S).group(1)
    caller_criteria = re.search(r"criteria are: `(.*?)`;", caller, re.S).group(1)
    thought_block = re.search(r"added after the history: `(.*?)`;", caller, re.S).group(1).replace("\\n", "\n")

    planner_object = (
        "the next planning steps provided by two AI assistants for the tool-use task and the conversation so far "
        "displayed below"
    )
    planner_definition = re.search(r'(A planning step is .*?\(stop without an answer\)\.)', planner_explain).group(1)
    planner_criteria = re.search(r"helpfulness: (.*?)\. You will", planner_explain).group(1)
    assert planner_object in planner_explain
    c = (
        planner_explain.replace(planner_object, caller_object.rstrip("."))
        .replace(planner_definition, caller_definition)
        .replace(planner_criteria, caller_criteria)
        .replace("{history}\n\n", "{history}\n\n" + thought_block + "\n")
        .replace("Next Planning Step", "Next API Call")
    )
    out = ""
    for name, t in [
        ("planner explain", planner_explain),
        ("planner verdict", verdict(planner_explain)),
        ("caller explain", c),
        ("caller verdict", verdict(c)),
    ]:
        out += f"===== {name} =====\n{t}\n"
    with open(os.path.join(HERE, "judge_prompts.txt"), "w", encoding="utf-8") as f:
        f.write(out)


if __name__ == "__main__":
    main()

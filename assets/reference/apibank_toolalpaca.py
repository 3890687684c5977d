#!/usr/bin/env python3
"""Prototype reader: API-Bank and ToolAlpaca-eval data -> alpha-UMi conversation records.

Reference for umi's Rust readers (crates/umi-data/src/readers/{api_bank,toolalpaca}.rs), checked by
tests/tests/dataset_readers.rs against the files in assets/reference/apibank_toolalpaca/.
Regenerate them (from the repository root, with ../shared/data beside it) with:

  python3 assets/reference/apibank_toolalpaca.py --data ../shared/data \
      --reference assets/reference/apibank_toolalpaca > /dev/null

--reference writes, per file kind, <kind>.json = {"kind", "read", "converted", "skipped", "fnv1a64":
[one hash per converted record], "first": [the first REFERENCE_FIRST records]}, and variants.json with
one combined hash per kind for --rationale narration and --toolsearcher drop. A record is hashed
without its "meta" key as FNV-1a 64 (hex) of the UTF-8 bytes of json.dumps(record) (Python
defaults), which is what umi's python_json_dumps writes for a Conversation; a combined hash hashes
the records' dumps joined with "\n". Everything else in this file is the prototype as designed.

Standalone, Python 3 stdlib only.  Reads ../shared/data (default /work/shared/data), converts every
source file kind into alpha-UMi records {"tools", "instruction", "conversations": [{"from", "value"}]}
(plus a "meta" dict with provenance and, for evaluation kinds, the gold step), prints per-kind counts
(records read / converted / skipped with reasons and locations / warnings), the number of role
samples the alpha-UMi splitter would derive (planner / caller / summarizer), planner-prompt sizes,
and one converted example per kind.

Usage:
  python3 apibank_toolalpaca_proto.py [--data DIR] [--rationale template|narration|empty]
                                      [--toolsearcher keep|drop] [--dump DIR] [--example-chars N]

Conventions (same as GLPFT/process_data/toolbench/prepro_raw_stage_2.py):
  planner turn  = (rationale + "\n" if rationale else "") + " Next: caller." / " Next: conclusion."
  caller turn   = "Action: " + name + "\nAction Input: " + json.dumps(args)
  tool doc      = {"Name": name, "function": description[:256],
                   "input": {arg: type + ", " + arg_description[-256:]  (just type if no description)}}
API-Bank has no thoughts, so the rationale is a deterministic placeholder (see rationale_*()).
"""

import argparse
import ast
import collections
import glob
import json
import os
import re
import statistics
import sys

# ----------------------------------------------------------------------------------------------
# alpha-UMi building blocks
# ----------------------------------------------------------------------------------------------

NEXT_CALLER = " Next: caller."
NEXT_CONCLUSION = " Next: conclusion."
NEXT_GIVE_UP = " Next: give up."

TOOLSEARCHER_SPEC = {
    "name": "ToolSearcher",
    "description": "Searches for relevant tools in library based on the keywords.",
    "input_parameters": {"keywords": {"type": "str", "description": "The keyword to search for."}},
    "output_parameters": {"best_matchs": {"type": "Union[List[dict], dict]",
                                          "description": "The best match tool(s)."}},
}

TOOLBENCH_PLANNER = ("You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\n"
                     "You are the assistant to plan what to do next and whether is caller's or conclusion's turn "
                     "to answer.\nAnswer with a following format:\nThe thought of the next step, followed by "
                     "Next: caller or conclusion or give up.")


def planner_text(rationale, marker):
    return (rationale + "\n" if rationale else "") + marker


def caller_text(name, args_json):
    return "Action: " + name + "\nAction Input: " + args_json


def turn(frm, value):
    return {"from": frm, "value": value}


def apibank_tool_doc(spec):
    """API-Bank spec {"name","description","input_parameters":{p:{"type","description"}}} -> alpha-UMi doc."""
    inp = {}
    params = spec.get("input_parameters")
    if not isinstance(params, dict):  # lv3-train: {'none'} (a Python set) or key absent
        params = {}
    for p, d in params.items():
        if isinstance(d, dict):
            ty = str(d.get("type", "str"))
            desc = d.get("description") or ""
            inp[p] = ty + ", " + desc[-256:] if desc else ty
        else:
            inp[p] = str(d)
    return {"Name": spec["name"], "function": (spec.get("description") or "")[:256], "input": inp}


def history(turns):
    out = []
    for t in turns:
        out.append(t["from"] + ": " + t["value"] + ("" if t["from"] == "observation" else "</s>"))
    return "".join(out)


def planner_prompt(tools, turns):
    doc = "".join(json.dumps(t) + "\n" for t in tools)
    return TOOLBENCH_PLANNER.replace("{doc}", doc).replace("{history}", history(turns)) + " assistant: "


def role_sample_counts(conv):
    """How many planner/caller/summarizer samples GLPFT's prepro_{planner,caller,summarizer}.py would make."""
    turns = conv["conversations"]
    p = c = s = 0
    plan_prompt_lens = []
    for i, t in enumerate(turns):
        nxt = turns[i + 1] if i + 1 < len(turns) else None
        if t["from"] == "assistant":
            if "Next: give up." in t["value"] or (nxt and nxt["from"] in ("caller", "conclusion")):
                p += 1
                plan_prompt_lens.append(len(planner_prompt(conv["tools"], turns[:i])))
        elif t["from"] == "caller":
            c += 1
        elif t["from"] == "conclusion" and t["value"] != "none":
            s += 1
    return p, c, s, plan_prompt_lens


def validate(conv):
    """Structural checks every converted record must pass (same shape as raw_data_stage_2.json)."""
    turns = conv["conversations"]
    assert turns and turns[0]["from"] == "user" and turns[0]["value"] == conv["instruction"], "first turn = instruction"
    names = {t["Name"] for t in conv["tools"]}
    for i, t in enumerate(turns):
        assert t["from"] in ("user", "assistant", "caller", "observation", "conclusion"), t["from"]
        assert isinstance(t["value"], str)
        prev = turns[i - 1]["from"] if i else None
        if t["from"] == "caller":
            assert prev == "assistant" and turns[i - 1]["value"].endswith(NEXT_CALLER), "caller after planner"
            m = re.match(r"^Action: (.*)\nAction Input: (.*)$", t["value"], re.S)
            assert m, "caller format"
            assert m.group(1) in names, "action %r not in tools" % m.group(1)
        if t["from"] == "conclusion":
            assert prev == "assistant" and turns[i - 1]["value"].endswith(NEXT_CONCLUSION), "conclusion after planner"
        if t["from"] == "observation":
            assert prev == "caller", "observation after caller"


# ----------------------------------------------------------------------------------------------
# Placeholder rationales (API-Bank has no thoughts)
# ----------------------------------------------------------------------------------------------

def rationale_call(mode, api_name, narration):
    if mode == "empty":
        return ""
    if mode == "narration" and narration:
        return narration
    return 'I will call the "%s" API.' % api_name


def rationale_conclude(mode, called_since_user):
    if mode == "empty":
        return ""
    if called_since_user:
        return "The API results are enough to reply to the user."
    return "I will reply to the user directly."


# ----------------------------------------------------------------------------------------------
# Report bookkeeping
# ----------------------------------------------------------------------------------------------

class Report:
    def __init__(self, kind, unit):
        self.kind, self.unit = kind, unit
        self.read = 0
        self.converted = []
        self.skipped = collections.OrderedDict()  # reason -> [locations]
        self.warnings = collections.OrderedDict()  # what -> [locations]
        self.notes = []

    def skip(self, reason, loc):
        self.skipped.setdefault(reason, []).append(loc)

    def warn(self, what, loc):
        self.warnings.setdefault(what, []).append(loc)

    def print(self, example_chars):
        print("=" * 100)
        print("KIND %s   (unit: %s)" % (self.kind, self.unit))
        nskip = sum(len(v) for v in self.skipped.values())
        print("  read %d, converted %d, skipped %d" % (self.read, len(self.converted), nskip))
        for r, locs in self.skipped.items():
            print("    skip  %-55s %4d  e.g. %s" % (r, len(locs), "; ".join(map(str, locs[:4]))))
        for w, locs in self.warnings.items():
            print("    warn  %-55s %4d  e.g. %s" % (w, len(locs), "; ".join(map(str, locs[:3]))))
        turns = collections.Counter(t["from"] for c in self.converted for t in c["conversations"])
        p = c = s = 0
        lens = []
        for conv in self.converted:
            a, b, d, l = role_sample_counts(conv)
            p, c, s = p + a, c + b, s + d
            lens += l
        print("  turns: %s" % dict(turns))
        print("  role samples (GLPFT splitter): planner %d, caller %d, summarizer %d" % (p, c, s))
        if getattr(self, "scored_last_only", False):
            print("  eval: %d scored decision points (the final assistant+caller of each record; earlier turns are "
                  "teacher-forced history, reference plan = call)" % len(self.converted))
        if lens:
            lens.sort()
            print("  planner prompt chars: median %d, p90 %d, max %d, >6000: %d" % (
                statistics.median(lens), lens[int(0.9 * (len(lens) - 1))], lens[-1], sum(x > 6000 for x in lens)))
        for n in self.notes:
            print("  note: " + n)
        if self.converted:
            ex = self.converted[0]
            print("  example (values cut to %d chars):" % example_chars)
            cut = lambda v: v if len(v) <= example_chars else v[:example_chars] + "...[%d chars]" % len(v)
            print("    meta: " + json.dumps(ex.get("meta", {}), ensure_ascii=False)[:400])
            print("    tools: " + cut(json.dumps(ex["tools"], ensure_ascii=False)))
            print("    instruction: " + json.dumps(cut(ex["instruction"]), ensure_ascii=False))
            for t in ex["conversations"]:
                print("    %-12s %s" % (t["from"], json.dumps(cut(t["value"]), ensure_ascii=False)))


# ----------------------------------------------------------------------------------------------
# Python-call parsing used by API-Bank's text formats: [Name(k='v', k2=3)]
# ----------------------------------------------------------------------------------------------

REQ_LINE = re.compile(r"^API-Request: \[?(\w+)\((.*?)\)\]?(?:->(.*))?$", re.S)


def split_top_level(s):
    parts, depth, quote, cur = [], 0, None, []
    i = 0
    while i < len(s):
        ch = s[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def parse_kwargs(args):
    """Returns (dict, how) with how in {"python", "lenient"}; (None, "fail") if hopeless."""
    if not args.strip():
        return {}, "python"
    try:
        call = ast.parse("f(%s)" % args, mode="eval").body
        if not call.args:
            return {k.arg: ast.literal_eval(k.value) for k in call.keywords}, "python"
    except Exception:
        pass
    # lenient: key=value pairs at top level; unquoted values are strings; a piece without '=' is
    # glued to the previous value (unquoted value containing a comma).
    out, last = {}, None
    for piece in split_top_level(args):
        m = re.match(r"^\s*(\w+)\s*=\s*(.*?)\s*$", piece, re.S)
        if not m:
            if last is None:
                return None, "fail"
            out[last] = str(out[last]) + "," + piece
            continue
        k, v = m.groups()
        try:
            out[k] = ast.literal_eval(v)
        except Exception:
            out[k] = v.strip("'\"") if (v[:1] == v[-1:] and v[:1] in "'\"") else v
        last = k
    return out, "lenient"


def parse_spec_lenient(text):
    """ToolSearcher result (Python repr of one spec dict or a list of them) -> list of specs."""
    try:
        v = ast.literal_eval(text)
        return (v if isinstance(v, list) else [v]), "python"
    except Exception:
        pass
    # repairs: bare type names ('type': str) quoted; apostrophes inside words (user's) escaped
    bare = lambda t: re.sub(r"'type': ([A-Za-z_][\w\[\], ]*?)(?=[,}])", r"'type': '\1'", t)
    apos = lambda t: re.sub(r"(?<=\w)'(?=\w)", "\\\\'", t)
    for fix in (bare, apos, lambda t: apos(bare(t))):
        try:
            v = ast.literal_eval(fix(text))
            return (v if isinstance(v, list) else [v]), "repaired"
        except Exception:
            pass
    specs = []
    # repr with unescaped apostrophes inside strings: pull fields by regex
    for m in re.finditer(r"\{'name': '(\w+)', 'description': '(.*?)', 'input_parameters': \{(.*?)\}\}?, 'output_parameters'",
                         text, re.S):
        name, desc, params = m.groups()
        ip = {}
        for pm in re.finditer(r"'(\w+)': \{'type': '?([^',]*)'?, 'description': ['\"](.*?)['\"]\}", params, re.S):
            ip[pm.group(1)] = {"type": pm.group(2), "description": pm.group(3)}
        specs.append({"name": name, "description": desc, "input_parameters": ip})
    if not specs:  # truncated text: keep at least name + description
        m = re.match(r"^\{'name': '(\w+)', 'description': '(.*?)'(?:, '|\})", text, re.S)
        if m:
            specs.append({"name": m.group(1), "description": m.group(2), "input_parameters": {}})
    return specs, ("regex" if specs else "fail")


def py_str(value):
    """Observation text: Python str() of the API output, exactly as API-Bank writes '->result'."""
    return value if isinstance(value, str) else str(value)


# ----------------------------------------------------------------------------------------------
# API-Bank dialogues (.jsonl): lv1-lv2-samples/{level-1-given-desc,level-2-toolsearcher}
# ----------------------------------------------------------------------------------------------

INLINE_CALL = re.compile(r"\[[A-Z]\w*\(.*?\)\]")


def convert_dialogue(rows, tools, where, rep, rationale_mode, toolsearcher):
    """rows: list of {"role": "User"|"AI"|"API", ...} -> alpha-UMi record (or None)."""
    if toolsearcher == "drop":
        rows = [r for r in rows if not (r["role"] == "API" and r["api_name"] == "ToolSearcher")]
    # trailing user turns get no reply: drop them
    while rows and rows[-1]["role"] == "User":
        rep.warn("trailing User turn(s) without reply dropped", where)
        rows = rows[:-1]
    if not rows or rows[0]["role"] != "User":
        return None
    conv = [turn("user", rows[0]["text"])]
    called_since_user = False
    i = 1
    while i < len(rows):
        r = rows[i]
        if r["role"] == "User":
            conv.append(turn("user", r["text"]))
            called_since_user = False
            i += 1
        elif r["role"] == "AI":
            j = i
            while j < len(rows) and rows[j]["role"] == "AI":
                j += 1
            texts = [rows[k]["text"] for k in range(i, j)]
            if j - i > 1:
                rep.warn("consecutive AI rows merged", "%s#%d" % (where, i))
            if j < len(rows) and rows[j]["role"] == "API":
                # narration before a call ("Sure, let me check."): becomes the rationale in
                # --rationale narration mode, otherwise dropped
                rep.warn("AI narration before API row (%s)" % ("used as rationale" if rationale_mode == "narration" else "dropped"),
                         "%s#%d" % (where, i))
                i = _emit_api(rows, j, conv, rep, where, rationale_mode, " ".join(texts))
                called_since_user = True
                if i < len(rows) and rows[i]["role"] == "User":
                    rep.warn("API row followed by User (no AI reply)", "%s#%d" % (where, i))
            else:
                conv.append(turn("assistant", planner_text(rationale_conclude(rationale_mode, called_since_user), NEXT_CONCLUSION)))
                conv.append(turn("conclusion", "\n".join(texts)))
                i = j
        elif r["role"] == "API":
            i = _emit_api(rows, i, conv, rep, where, rationale_mode, None)
            called_since_user = True
            if i < len(rows) and rows[i]["role"] == "User":
                rep.warn("API row followed by User (no AI reply)", "%s#%d" % (where, i))
        else:
            rep.warn("unknown role %r" % r["role"], "%s#%d" % (where, i))
            i += 1
    names = {t["Name"] for t in tools}
    for t in conv:
        if t["from"] == "caller":
            n = t["value"].split("\n", 1)[0][len("Action: "):]
            if n not in names:
                rep.warn("called API missing from tools (stub added)", "%s:%s" % (where, n))
                tools.append({"Name": n, "function": "", "input": {}})
                names.add(n)
    return {"tools": tools, "instruction": conv[0]["value"], "conversations": conv}


def _emit_api(rows, i, conv, rep, where, rationale_mode, narration):
    r = rows[i]
    res = r.get("result") or {}
    if "api_name" not in res:
        rep.warn("result.api_name missing (harmless)", "%s#%d" % (where, i))
    if res.get("input") != r["param_dict"]:
        rep.warn("param_dict != result.input (param_dict used)", "%s#%d" % (where, i))
    conv.append(turn("assistant", planner_text(rationale_call(rationale_mode, r["api_name"], narration), NEXT_CALLER)))
    conv.append(turn("caller", caller_text(r["api_name"], json.dumps(r["param_dict"]))))
    if res.get("exception") is not None:
        rep.warn("API exception", "%s#%d" % (where, i))
        obs = "Exception: " + str(res["exception"])
    else:
        obs = py_str(res.get("output"))
    conv.append(turn("observation", obs))
    return i + 1


def read_dialogues(data, sub, catalog, rationale_mode, toolsearcher):
    kind = "apibank/" + sub
    rep = Report(kind, "one .jsonl file = one dialogue")
    for path in sorted(glob.glob(os.path.join(data, "api-bank/lv1-lv2-samples", sub, "*.jsonl"))):
        base = os.path.basename(path)
        rep.read += 1
        rows = []
        bad = False
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    rep.skip("line is not JSON", "%s:%d" % (base, ln + 1))
                    bad = True
        if bad:
            continue
        if not rows:
            rep.skip("empty file", base)
            continue
        inline = [k for k, r in enumerate(rows) if r["role"] == "AI" and INLINE_CALL.search(r["text"])]
        if inline:
            rep.skip("API call written inline in AI text, not executed", "%s#%d" % (base, inline[0]))
            continue
        missing = [k for k, r in enumerate(rows) if r["role"] not in ("User", "AI", "API")
                   or (r["role"] in ("User", "AI") and not isinstance(r.get("text"), str))
                   or (r["role"] == "API" and ("api_name" not in r or not isinstance(r.get("param_dict"), dict)))]
        if missing:
            rep.skip("row with missing fields", "%s#%d" % (base, missing[0]))
            continue
        # tools: APIs named in the file name (those in the catalog), then APIs called, in first-call order
        m = re.match(r"^(.*)-level-(\d+)-(\d+)\.jsonl$", base)
        declared = m.group(1).split("-") if m else []
        called = []
        for r in rows:
            if r["role"] == "API" and r["api_name"] not in called:
                called.append(r["api_name"])
        order = []
        for n in (["ToolSearcher"] if sub.startswith("level-2") and toolsearcher == "keep" else []) + declared + called:
            if n == "ToolSearcher" and toolsearcher == "drop":
                continue
            if n not in order:
                order.append(n)
        tools = []
        for n in order:
            if n == "ToolSearcher":
                tools.append(apibank_tool_doc(TOOLSEARCHER_SPEC))
            elif n in catalog:
                tools.append(apibank_tool_doc(catalog[n]))
            else:
                rep.warn("file-name API not in catalog (left out)", "%s:%s" % (base, n))
        if not any(r["role"] == "API" for r in rows):
            rep.warn("dialogue without any API row", base)
        if sum(r["role"] == "User" for r in rows) > 1:
            rep.warn("multi-turn dialogue (several User rows)", base)
        conv = convert_dialogue(rows, tools, base, rep, rationale_mode, toolsearcher)
        if conv is None:
            rep.skip("nothing left after trimming", base)
            continue
        conv["meta"] = {"source": kind, "file": base}
        validate(conv)
        rep.converted.append(conv)
    return rep


# ----------------------------------------------------------------------------------------------
# API-Bank lv3-train.json (step samples -> dialogues)
# ----------------------------------------------------------------------------------------------

def lv3_parse_sample(x):
    lines = x["input"].split("\n")
    return lines[0], lines[1], lines[2:-1], lines[-1]


def req_key(line):
    m = REQ_LINE.match(line)
    if not m:
        return line.strip()
    name, args, _ = m.groups()
    return name + "(" + args.strip() + ")"


def steps_to_conv(user_text, steps, final_ai, rep, where, rationale_mode, toolsearcher, extra_specs=()):
    """steps: list of (name, kwargs_dict, observation_text, toolsearcher_specs_or_None)."""
    tools, seen = [], set()

    def add(spec):
        if spec["name"] not in seen:
            seen.add(spec["name"])
            tools.append(apibank_tool_doc(spec))

    if toolsearcher == "keep":
        add(TOOLSEARCHER_SPEC)
    for s in extra_specs:
        add(s)
    conv = [turn("user", user_text)]
    for name, kwargs, obs, specs in steps:
        for s in specs or []:
            if isinstance(s, dict) and "name" in s:
                if not isinstance(s.get("input_parameters"), dict):
                    rep.warn("retrieved spec input_parameters missing or not a dict ({'none'})", "%s:%s" % (where, s["name"]))
                add(s)
        if name == "ToolSearcher" and toolsearcher == "drop":
            continue
        conv.append(turn("assistant", planner_text(rationale_call(rationale_mode, name, None), NEXT_CALLER)))
        conv.append(turn("caller", caller_text(name, json.dumps(kwargs))))
        conv.append(turn("observation", obs))
    for t in conv:
        if t["from"] == "caller":
            n = t["value"].split("\n", 1)[0][len("Action: "):]
            if n not in seen:
                rep.warn("called API has no spec from ToolSearcher (stub added)", "%s:%s" % (where, n))
                seen.add(n)
                tools.append({"Name": n, "function": "", "input": {}})
    if final_ai is not None:
        conv.append(turn("assistant", planner_text(rationale_conclude(rationale_mode, any(t["from"] == "caller" for t in conv)), NEXT_CONCLUSION)))
        conv.append(turn("conclusion", final_ai))
    return {"tools": tools, "instruction": user_text, "conversations": conv}


def parse_history_line(line, rep, where):
    """'API-Request: [Name(args)]->result' -> (name, kwargs, obs, specs) or None."""
    m = REQ_LINE.match(line)
    if not m:
        rep.warn("history line not an API request", where)
        return None
    name, args, res = m.groups()
    if not line.startswith("API-Request: ["):
        rep.warn("API-Request without [ ] brackets (parsed leniently)", where)
    kwargs, how = parse_kwargs(args)
    if how == "lenient":
        rep.warn("arguments not Python literals (unquoted values), lenient parse", where)
    if kwargs is None:
        return None
    specs = None
    if name == "ToolSearcher" and res is not None:
        specs, how = parse_spec_lenient(res)
        if how == "repaired":
            rep.warn("ToolSearcher result repaired (bare type names / unescaped apostrophes)", where)
        elif how == "regex":
            rep.warn("ToolSearcher result not a Python literal, specs by regex", where)
        elif how == "fail":
            rep.warn("ToolSearcher result unparseable, no spec", where)
    elif res is not None:
        try:
            ast.literal_eval(res)
        except Exception:
            rep.warn("API result not a Python literal (kept as raw text)", where)
    return name, kwargs, (res if res is not None else ""), specs


def read_lv3_train(data, rationale_mode, toolsearcher):
    rep = Report("apibank/lv3-train", "step sample (instruction/input/output); dialogues = 'Generate AI Response' samples")
    d = json.load(open(os.path.join(data, "api-bank/training-data/lv3-train.json"), encoding="utf-8"))
    rep.read = len(d)
    seen_full = {}
    chains = []  # (user, [req keys]) of complete dialogues
    api_samples = []
    for idx, x in enumerate(d):
        if set(x) != {"instruction", "input", "output"}:
            rep.skip("missing fields", "#%d" % idx)
            continue
        spec_line, user_line, hist, gen = lv3_parse_sample(x)
        if not user_line.startswith("User: "):
            rep.skip("second input line is not 'User: '", "#%d" % idx)
            continue
        if gen.startswith("Generate API Request"):
            api_samples.append((idx, user_line, hist, x["output"]))
            continue
        if not gen.startswith("Generate AI Response"):
            rep.skip("unknown generation cue", "#%d" % idx)
            continue
        key = (x["input"], x["output"])
        if key in seen_full:
            rep.skip("duplicate of an earlier dialogue sample", "#%d (=#%d)" % (idx, seen_full[key]))
            continue
        seen_full[key] = idx
        where = "#%d" % idx
        if any(h.startswith("AI:") for h in hist):
            rep.skip("AI line inside the API history", where)
            continue
        steps = []
        ok = True
        for h in hist:
            st = parse_history_line(h, rep, where)
            if st is None:
                ok = False
                break
            steps.append(st)
        if not ok:
            rep.skip("unparseable API-Request line", where)
            continue
        final = x["output"].rstrip("\n")
        final = final[len("AI: "):] if final.startswith("AI: ") else final
        conv = steps_to_conv(user_line[len("User: "):], steps, final, rep, where, rationale_mode, toolsearcher)
        conv["meta"] = {"source": rep.kind, "index": idx}
        validate(conv)
        rep.converted.append(conv)
        chains.append((user_line, [req_key(h) for h in hist]))
    # step samples "Generate API Request" are prefixes of the dialogues: check coverage
    covered = 0
    by_user = collections.defaultdict(list)
    for u, ks in chains:
        by_user[u].append(ks)
    for idx, u, hist, out in api_samples:
        ks = [req_key(h) for h in hist] + [req_key(out.strip())]
        if any(len(c) >= len(ks) and c[:len(ks)] == ks for c in by_user.get(u, [])):
            covered += 1
        else:
            rep.skip("API step sample not a prefix of any complete dialogue (orphan)", "#%d" % idx)
    rep.notes.append("%d 'Generate API Request' step samples; %d are decision points of a converted dialogue "
                     "(not converted separately)" % (len(api_samples), covered))
    rep.read_api_samples = len(api_samples)
    return rep


# ----------------------------------------------------------------------------------------------
# API-Bank test-data: level-1-api.json / level-2-api.json (next-call decision points)
# ----------------------------------------------------------------------------------------------

def read_test_api(data, fname, sub, catalog, rationale_mode, toolsearcher):
    rep = Report("apibank/test-" + fname, "one next-call decision point")
    rep.scored_last_only = True
    d = json.load(open(os.path.join(data, "api-bank/test-data", fname), encoding="utf-8"))
    rep.read = len(d)
    seen = {}
    for idx, x in enumerate(d):
        where = "#%d(%s)" % (idx, x.get("file"))
        if not {"file", "id", "input", "instruction", "expected_output"} <= set(x):
            rep.skip("missing fields", where)
            continue
        key = (x["input"], x["expected_output"], x["file"])
        if key in seen:
            rep.skip("exact duplicate (same file/input/expected_output)", "%s=#%d" % (where, seen[key]))
            continue
        seen[key] = idx
        # tools: JSON lines after "API descriptions:\n"
        specs = []
        for l in x["instruction"].split("API descriptions:\n", 1)[1].strip().split("\n"):
            specs.append(json.loads(l))
        # dialogue rows for fallback argument lookup
        dpath = os.path.join(data, "api-bank/lv1-lv2-samples", sub, x["file"])
        drows = [json.loads(l) for l in open(dpath, encoding="utf-8") if l.strip()] if os.path.exists(dpath) else []
        dapi = [r for r in drows if r["role"] == "API"]
        rows = []
        k = 0
        bad = None
        lines = x["input"].split("\n")
        for l in lines:
            if l.startswith("User: "):
                rows.append({"role": "User", "text": l[len("User: "):]})
            elif l.startswith("AI: "):
                if INLINE_CALL.search(l):
                    rep.warn("history AI text contains an inline [Api(...)] call (kept as text)", where)
                rows.append({"role": "AI", "text": l[len("AI: "):]})
            elif l.startswith("API-Request: "):
                m = REQ_LINE.match(l)
                name, args, res = m.groups()
                kwargs, how = parse_kwargs(args)
                if how != "python" and k < len(dapi) and dapi[k]["api_name"] == name:
                    kwargs = dapi[k]["param_dict"]
                    rep.warn("history call args unparseable, taken from the dialogue file", where)
                elif kwargs is None:
                    bad = "history API-Request unparseable"
                    break
                out = res if res is not None else ""
                if name == "ToolSearcher":
                    ss, _ = parse_spec_lenient(out)
                    specs += [s for s in ss if isinstance(s, dict) and "name" in s]
                rows.append({"role": "API", "api_name": name, "param_dict": kwargs,
                             "result": {"api_name": name, "input": kwargs, "output": out, "exception": None}})
                k += 1
            elif l.startswith("Generate API Request") or not l.strip():
                continue
            else:
                bad = "unknown input line"
                break
        if bad:
            rep.skip(bad, where)
            continue
        m = re.match(r"^API-Request: \[(\w+)\((.*)\)\]$", x["expected_output"].strip(), re.S)
        if not m:
            rep.skip("expected_output not [Name(args)]", where)
            continue
        gname, gargs = m.groups()
        gold, how = parse_kwargs(gargs)
        if how != "python":
            if k < len(dapi) and dapi[k]["api_name"] == gname:
                gold = dapi[k]["param_dict"]
                rep.warn("gold args not Python literals (nested quotes), taken from the dialogue file", where)
            elif gold is None:
                rep.skip("gold args unparseable", where)
                continue
        if toolsearcher == "drop" and gname == "ToolSearcher":
            rep.skip("gold call is ToolSearcher (--toolsearcher drop)", where)
            continue
        # history rows -> alpha-UMi turns with the same rules as the dialogues, then the gold step
        tools, tn = [], set()
        if toolsearcher == "drop":
            specs = [s for s in specs if s["name"] != "ToolSearcher"]
        for s in specs:
            if s["name"] not in tn:
                tn.add(s["name"])
                tools.append(apibank_tool_doc(s))
        if gname not in tn:
            rep.warn("gold API not among the given/retrieved descriptions", "%s:%s" % (where, gname))
            if gname in catalog:
                tools.append(apibank_tool_doc(catalog[gname]))
                tn.add(gname)
        gold_row = {"role": "API", "api_name": gname, "param_dict": gold,
                    "result": {"api_name": gname, "input": gold, "output": "", "exception": None}}
        sub_rep = Report("tmp", "")
        conv = convert_dialogue(rows + [gold_row], tools, where, sub_rep, rationale_mode, toolsearcher)
        if conv is None:
            rep.skip("no user turn", where)
            continue
        assert conv["conversations"][-1]["from"] == "observation"
        conv["conversations"].pop()  # the gold call has no observation: the sample ends with the caller turn
        conv["meta"] = {"source": rep.kind, "index": idx, "file": x["file"], "id": x["id"],
                        "gold": {"action": gname, "action_input": json.dumps(gold)}}
        validate(conv)
        rep.converted.append(conv)
    return rep


# ----------------------------------------------------------------------------------------------
# API-Bank test-data/level-3.json (full gold API sequences + response)
# ----------------------------------------------------------------------------------------------

def read_test_level3(data, catalog, rationale_mode, toolsearcher):
    rep = Report("apibank/test-level-3.json", "one requirement with its gold API sequence and response")
    d = json.load(open(os.path.join(data, "api-bank/test-data/level-3.json"), encoding="utf-8"))
    rep.read = len(d)
    for idx, x in enumerate(d):
        where = "#%d" % idx
        if not {"requirement", "response", "apis"} <= set(x) or not x["apis"]:
            rep.skip("missing fields / no apis", where)
            continue
        steps = []
        for a in x["apis"]:
            res = a["output"]
            if res.get("exception") is not None:
                rep.warn("API exception", where)
                obs = "Exception: " + str(res["exception"])
            else:
                obs = py_str(res["output"])
            specs = None
            if a["api_name"] == "ToolSearcher":
                o = res.get("output")
                specs = o if isinstance(o, list) else [o]
            steps.append((a["api_name"], a["input"], obs, specs))
        conv = steps_to_conv(x["requirement"].strip(), steps, x["response"], rep, where, rationale_mode, toolsearcher)
        conv["meta"] = {"source": rep.kind, "index": idx}
        validate(conv)
        rep.converted.append(conv)
    return rep


# ----------------------------------------------------------------------------------------------
# ToolAlpaca eval_{simulated,real}.json -> first-step decision points
# ----------------------------------------------------------------------------------------------

def toolalpaca_tools(api, strip_auth, rep, where):
    tools = []
    auth = set((api.get("Authentication") or {}).keys())
    for fname, text in api["Function_Description"].items():
        if fname == "components":
            continue
        parts = re.split(r"(?:^|\n)Parameters: ", text, maxsplit=1)
        desc = parts[0].strip()
        params = {}
        if len(parts) == 2:
            pjson = parts[1].split("\nOutput:", 1)[0]
            try:
                params = json.loads(pjson)
            except ValueError:
                rep.warn("Function_Description Parameters not JSON", "%s:%s" % (where, fname))
        else:
            rep.warn("Function_Description without Parameters", "%s:%s" % (where, fname))
        if strip_auth:
            params = {k: v for k, v in params.items() if k not in auth}
        tools.append({"Name": fname, "function": desc[:256], "input": params})
    return tools


def read_toolalpaca(data, fname, strip_auth=True):
    rep = Report("toolalpaca/" + fname, "one instruction of one API (first gold step scored)")
    rep.scored_last_only = True
    d = json.load(open(os.path.join(data, "toolalpaca-eval", fname), encoding="utf-8"))
    rep.notes.append("%d APIs" % len(d))
    for ai, api in enumerate(d):
        where_api = "%s" % api.get("Name")
        ins, gold = api.get("Instructions") or [], api.get("Golden_Answers") or []
        if len(ins) != len(gold):
            rep.warn("Instructions/Golden_Answers length mismatch", where_api)
        try:
            doc = json.loads(api["Documentation"])
            if any(k.startswith("/") or k == "schemas" for item in doc.get("paths", {}).values() for k in item):
                rep.warn("Documentation 'paths' malformed (paths/components nested inside a path)", where_api)
            if any(not k.startswith("/") for k in doc.get("paths", {})):
                rep.warn("Documentation path without leading '/'", where_api)
            if any(op.get("operationId") is None for item in doc.get("paths", {}).values()
                   for m, op in item.items() if m in ("get", "post", "put", "delete", "patch")):
                rep.warn("OpenAPI operation without operationId (names come from Function_Description)", where_api)
            if any(m in ("put", "delete", "patch") for item in doc.get("paths", {}).values() for m in item):
                rep.warn("OpenAPI PUT/DELETE/PATCH operations", where_api)
        except ValueError:
            rep.warn("Documentation not JSON", where_api)
        tools = toolalpaca_tools(api, strip_auth, rep, where_api)
        names = {t["Name"] for t in tools}
        auth = set((api.get("Authentication") or {}).keys())
        for ii, (instr, g) in enumerate(zip(ins, gold)):
            rep.read += 1
            where = "%s[%d]" % (where_api, ii)
            if not isinstance(instr, str) or not instr.strip():
                rep.skip("empty instruction", where)
                continue
            if not g:
                rep.skip("no gold steps", where)
                continue
            first = g[0]
            if not {"Action", "Action_Input"} <= set(first):
                rep.skip("gold step without Action/Action_Input", where)
                continue
            for si, s in enumerate(g[1:], 1):
                if s.get("Action") not in names:
                    rep.warn("later gold step action not in tools (%s)" % s.get("Action"), "%s.%d" % (where, si))
            if first["Action"] == "getDetails":
                rep.skip("first gold step is 'getDetails' (ask the user), not a tool", where)
                continue
            if first["Action"] not in names:
                rep.skip("first gold action not in Function_Description", "%s:%s" % (where, first["Action"]))
                continue
            raw = first["Action_Input"]
            try:
                parsed = json.loads(raw)
                ok = isinstance(parsed, dict)
            except ValueError:
                ok = False
            if not ok:
                rep.warn("first gold Action_Input not JSON (kept raw; Arg F1 drops it)", where)
                gold_input = raw
            else:
                if strip_auth and auth & set(parsed):
                    rep.warn("auth key(s) removed from gold Action_Input", where)
                    parsed = {k: v for k, v in parsed.items() if k not in auth}
                if any(v == "" for v in parsed.values()):
                    rep.warn("gold Action_Input has empty-string values", where)
                gold_input = json.dumps(parsed)
            if len(g) > 1:
                rep.warn("instruction with several gold steps (only first scored)", where)
            conv = {"tools": tools, "instruction": instr,
                    "conversations": [turn("user", instr),
                                      turn("assistant", planner_text("", NEXT_CALLER)),
                                      turn("caller", caller_text(first["Action"], gold_input))],
                    "meta": {"source": rep.kind, "api": api["Name"], "api_index": ai, "instruction_index": ii,
                             "n_gold_steps": len(g), "arg_f1_scorable": ok,
                             "gold": {"action": first["Action"], "action_input": gold_input},
                             "projection": api["Function_Projection"].get(first["Action"])}}
            validate(conv)
            rep.converted.append(conv)
    return rep


# ----------------------------------------------------------------------------------------------

def all_reports(data, catalog, rationale, toolsearcher):
    return [
        read_dialogues(data, "level-1-given-desc", catalog, rationale, toolsearcher),
        read_dialogues(data, "level-2-toolsearcher", catalog, rationale, toolsearcher),
        read_lv3_train(data, rationale, toolsearcher),
        read_test_api(data, "level-1-api.json", "level-1-given-desc", catalog, rationale, toolsearcher),
        read_test_api(data, "level-2-api.json", "level-2-toolsearcher", catalog, rationale, toolsearcher),
        read_test_level3(data, catalog, rationale, toolsearcher),
        read_toolalpaca(data, "eval_simulated.json"),
        read_toolalpaca(data, "eval_real.json"),
    ]


REFERENCE_FIRST = 10


def record_dump(conv):
    return json.dumps({k: v for k, v in conv.items() if k != "meta"})


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def write_reference(out_dir, data, catalog, reps):
    os.makedirs(out_dir, exist_ok=True)
    for r in reps:
        records = [json.loads(record_dump(c)) for c in r.converted]
        ref = {"kind": r.kind, "read": r.read, "converted": len(r.converted),
               "skipped": sum(len(v) for v in r.skipped.values()),
               "fnv1a64": [fnv1a64(record_dump(c)) for c in r.converted],
               "first": records[:REFERENCE_FIRST]}
        with open(os.path.join(out_dir, r.kind.split("/")[1].replace(".json", "") + ".json"), "w", encoding="utf-8") as f:
            json.dump(ref, f, indent=0, ensure_ascii=False)
            f.write("\n")
    variants = {}
    for name, rationale, toolsearcher in (("rationale=narration", "narration", "keep"), ("toolsearcher=drop", "template", "drop")):
        variants[name] = {}
        for r in all_reports(data, catalog, rationale, toolsearcher):
            variants[name][r.kind] = {"converted": len(r.converted),
                                      "fnv1a64": fnv1a64("\n".join(record_dump(c) for c in r.converted))}
    with open(os.path.join(out_dir, "variants.json"), "w", encoding="utf-8") as f:
        json.dump(variants, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--rationale", choices=["template", "narration", "empty"], default="template")
    ap.add_argument("--toolsearcher", choices=["keep", "drop"], default="keep")
    ap.add_argument("--dump", default=None, help="write converted records per kind as JSON into this folder")
    ap.add_argument("--example-chars", type=int, default=160)
    ap.add_argument("--reference", default=None,
                    help="write umi's test reference files into this folder (see the top of this file)")
    args = ap.parse_args()

    catalog = {s["name"]: s for s in json.load(open(os.path.join(args.data, "api-bank/tool-catalog/tool_catalog.json"), encoding="utf-8"))}
    print("tool catalog: %d specs; rationale=%s toolsearcher=%s" % (len(catalog), args.rationale, args.toolsearcher))

    reps = all_reports(args.data, catalog, args.rationale, args.toolsearcher)
    for r in reps:
        r.print(args.example_chars)

    # overlap checks between training and test kinds
    print("=" * 100)
    test_files = {c["meta"]["file"] for r in reps if r.kind.startswith("apibank/test-level-") and r.kind.endswith("api.json") for c in r.converted}
    dial_files = {c["meta"]["file"] for r in reps if r.kind.startswith("apibank/level-") for c in r.converted}
    print("OVERLAP: dialogue files converted %d; files that test-data level-1/2-api decision points come from %d; "
          "shared %d" % (len(dial_files), len(test_files), len(dial_files & test_files)))
    for dk, tk in (("apibank/level-1-given-desc", "apibank/test-level-1-api.json"),
                   ("apibank/level-2-toolsearcher", "apibank/test-level-2-api.json")):
        D = {c["meta"]["file"]: c for r in reps if r.kind == dk for c in r.converted}
        T = [c for r in reps if r.kind == tk for c in r.converted]
        same = sum(1 for t in T if t["meta"]["file"] in D and
                   D[t["meta"]["file"]]["conversations"][:len(t["conversations"])] == t["conversations"])
        print("CROSS-CHECK: %s decision points whose turns are a verbatim prefix of the converted dialogue: %d of %d "
              "(%d come from dialogues the dialogue reader skipped)" % (tk, same, len(T), sum(t["meta"]["file"] not in D for t in T)))
    norm = lambda s: re.sub(r"\s*TIME:.*$", "", s).strip().lower()
    lv3u = {norm(c["instruction"]) for r in reps if r.kind == "apibank/lv3-train" for c in r.converted}
    t3u = [norm(c["instruction"]) for r in reps if r.kind == "apibank/test-level-3.json" for c in r.converted]
    print("OVERLAP: lv3-train dialogues vs test level-3 requirements, exact same text: %d of %d" % (sum(u in lv3u for u in t3u), len(t3u)))
    print("SUMMARY")
    for r in reps:
        print("  %-42s read %5d  converted %5d  skipped %4d" % (r.kind, r.read, len(r.converted), sum(len(v) for v in r.skipped.values())))
    if args.reference:
        assert (args.rationale, args.toolsearcher) == ("template", "keep"), "references use the defaults"
        write_reference(args.reference, args.data, catalog, reps)
        print("references written to " + args.reference)
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        for r in reps:
            fn = os.path.join(args.dump, r.kind.replace("/", "__") + ".json")
            with open(fn, "w", encoding="utf-8") as f:
                json.dump(r.converted, f, indent=1, ensure_ascii=False)
        print("dumped to " + args.dump)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Standalone prototype of alpha-UMi's ToolBench preprocessing, stages 1 and 2, written
independently of umi's Rust port (crates/umi-data/src/readers/toolbench/) from the reference:

  X-PLUG/Multi-LLM-Agent @ f9eeef7ad2a37eaf345d3682dc1ab89d0641136c
  GLPFT/process_data/toolbench/prepro_raw_stage_1.py
  GLPFT/process_data/toolbench/prepro_raw_stage_2.py

Regenerate the fixtures tests/tests/toolbench_reader.rs compares with (from the repository
root, with ../shared/data beside it):

  python3 assets/reference/toolbench_stage12.py \
      --dump-stage1 assets/reference/toolbench_stage1_expected.json \
      --dump-stage2 assets/reference/toolbench_stage2_expected.json

Both cover the 15 example answer files of ../shared/data/toolbench-data-example/answer in sorted
file order with no test ids (13 records; G1/69 and G3/8 have no train_messages): stage 1 as
raw_data_stage_1.json records, and stage 2 of those as raw_data_stage_2.json records, written as
json.dump(..., indent=2) writes them. Without --dump options the script only runs its checks:
stage 2 over the released raw_data_stage_1.json against raw_data_stage_2.json (20/20 records,
byte-identical file), stage 1 over the example files, and hand-derived edge cases.

The reference relies on try/except and on Python's dynamic typing. This prototype spells every
branch out with explicit type dispatch so that it maps 1:1 onto a port over serde_json::Value;
every situation in which the reference would crash raises RefCrash instead. Comments such as
"spec 2.5" refer to the sections of the written specification the prototype came with (stage 1:
sections 1.x, stage 2: 2.x, Python semantics: 4.x); the Rust module docs restate the rules.

Standard library only.  Run:  python3 toolbench_stage12.py [--data DIR] [--dump-stage1 OUT.json]
                                                          [--dump-stage2 OUT.json]
"""
import json
import os
import sys

# ---------------------------------------------------------------- literals
TEST_SETS = ["G1_category", "G1_instruction", "G1_tool",
             "G2_category", "G2_instruction", "G3_instruction"]
GROUPS = ["G1_answer", "G2_answer", "G3_answer"]
FINISH = "Finish"
GIVE_UP = "give_up_and_restart"
FINAL_ANSWER_MARKER = '"final_answer": '   # 16 chars, one space after ':'
RESPONSE_MARKER = '"response":'            # 11 chars, no space after ':'
NEXT_CALLER = " Next: caller."
NEXT_CONCLUSION = " Next: conclusion."
NEXT_GIVE_UP = " Next: give up."
STAGE1_LIMIT = 20                          # the reference writes data[:20]


class RefCrash(Exception):
    """The reference script would raise an uncaught exception here."""


# ----------------------------------------------------------- json helpers
class _ParseFail(Exception):
    pass


def py_json_loads(s):
    """json.loads as the reference calls it, but only for str input.

    Python's json.loads accepts NaN/Infinity/-Infinity, lone surrogate escapes,
    duplicate keys (last wins), surrounding JSON whitespace; rejects raw
    control characters inside strings (strict=True) and trailing data.
    """
    try:
        return json.loads(s)
    except ValueError as e:            # JSONDecodeError is a ValueError
        raise _ParseFail(str(e))
    except RecursionError as e:        # very deep nesting
        raise _ParseFail(str(e))


def py_json_dump(obj):
    """Byte-exact equivalent of `json.dump(obj, f, indent=2)` (no trailing newline)."""
    return json.dumps(obj, indent=2)


def is_str(v):
    return isinstance(v, str)


def py_strip_ws(s):
    """str.strip() with no argument: strips chars for which str.isspace() is true."""
    return s.strip()


# ------------------------------------------------------------------ stage 1
def convert_tool(t):
    """One entry of answer_generation.function -> alpha-UMi tool doc (spec 1.4).
    Returns None for the Finish pseudo-tool."""
    name = t["name"]
    if name == FINISH:
        return None
    if not is_str(name):
        raise RefCrash("tool name not a str (slice)")
    desc = t["description"]
    if not is_str(desc):
        raise RefCrash("description not a str")
    tool_input = {}
    for arg_name, arg_value in t["parameters"]["properties"].items():
        arg_type = arg_value["type"]
        if "description" in arg_value:
            if not is_str(arg_type) or not is_str(arg_value["description"]):
                raise RefCrash("type/description not str")
            tool_input[arg_name] = arg_type + ", " + arg_value["description"][-256:]
        else:
            tool_input[arg_name] = arg_type          # raw JSON value, any type
    return {"Name": name[-64:], "function": desc[:256], "input": tool_input}


def stage1_record(d):
    """Parsed answer file -> stage-1 record, or None when the file is skipped."""
    if not isinstance(d, dict):
        raise RefCrash("answer file top level is not an object")
    if "answer_generation" not in d:
        return None
    ag = d["answer_generation"]
    if not isinstance(ag, dict):
        raise RefCrash("answer_generation not an object")
    if "train_messages" not in ag:
        return None
    instruction = ag["query"]
    tools = []
    for t in ag["function"]:
        nt = convert_tool(t)
        if nt is not None:
            tools.append(nt)
    tm = ag["train_messages"]
    if not isinstance(tm, list) or not tm:
        raise RefCrash("train_messages empty / not a list")
    return {"tools": tools, "instruction": instruction, "chains": tm[-1]}


def load_test_ids(data_dir):
    ids = []
    for s in TEST_SETS:
        with open(os.path.join(data_dir, "test_query_ids", s + ".json"), encoding="utf-8") as f:
            v = json.load(f)
        ids += list(v)   # dict -> its keys (ToolBench's format); list -> its items
    return ids


def file_query_id(file_name):
    return file_name.split("_")[0]


def stage1(data_dir, test_ids, order=sorted, limit=STAGE1_LIMIT, report=None):
    """Returns (written_records, all_records).  `order` replaces os.listdir's
    unspecified order (the reference does not sort)."""
    data = []
    for g in GROUPS:
        gdir = os.path.join(data_dir, "answer", g)
        for fn in order(os.listdir(gdir)):
            if file_query_id(fn) in test_ids:
                if report is not None:
                    report.append((g, fn, "skipped: test id"))
                continue
            with open(os.path.join(gdir, fn), encoding="utf-8") as f:
                d = json.load(f)
            rec = stage1_record(d)
            if report is not None:
                report.append((g, fn, "kept" if rec is not None else "skipped: no answer_generation.train_messages"))
            if rec is not None:
                data.append(rec)
    return (data[:limit] if limit is not None else data), data


# ------------------------------------------------------------------ stage 2
def finish_outcome(content, args):
    """Finish call -> ("give_up", None) or ("answer", final_answer) (spec 2.5)."""
    # --- the reference's try block
    parsed_ok = False
    if isinstance(args, dict):
        j, parsed_ok = args, True
    elif is_str(args):
        try:
            j, parsed_ok = py_json_loads(args), True
        except _ParseFail:
            pass
    # (any other args type: json.loads raises TypeError -> except path)
    if parsed_ok and isinstance(j, dict) and "return_type" in j:
        if j["return_type"] == GIVE_UP:        # Python ==: only the exact str matches
            return ("give_up", None)
        return ("answer", j["final_answer"] if "final_answer" in j else "none")
    # --- the reference's except path, on the ORIGINAL arguments value
    if is_str(args):
        if GIVE_UP in args:
            return ("give_up", None)
        k = args.find(FINAL_ANSWER_MARKER)
        if k != -1:
            fa = args[k + len(FINAL_ANSWER_MARKER):]
            return ("answer", py_strip_ws(fa).strip("}").strip('"'))
        return ("answer", content if content is not None else "none")
    if isinstance(args, (dict, list)):
        # `in` = key / element membership; otherwise `.find` -> AttributeError
        if GIVE_UP in args:
            return ("give_up", None)
        raise RefCrash("Finish arguments dict/list without return_type: .find on non-str")
    raise RefCrash("Finish arguments of type %s" % type(args).__name__)


def observation_value(content):
    """function message content -> observation value (spec 2.7)."""
    if not is_str(content):
        # json.loads(None/number/...) -> TypeError -> except -> content.find -> crash
        raise RefCrash("function content not a str")
    try:
        v = py_json_loads(content)
    except _ParseFail:
        v = _ParseFail
    if v is not _ParseFail:
        if isinstance(v, dict) and "response" in v:
            return v["response"]            # any JSON type, emitted as is
        if not is_str(v):
            # dict w/o "response", list, number, bool, null: the except path calls
            # .find on the *parsed* value -> AttributeError
            raise RefCrash("function content parses to %s without 'response'" % type(v).__name__)
        text = v   # content was a JSON string literal: search the DECODED string
    else:
        text = content
    k = text.find(RESPONSE_MARKER)
    return text[k + len(RESPONSE_MARKER):] if k != -1 else ""


def stage2_record(d):
    conv = [{"from": "user", "value": d["instruction"]}]
    for c in d["chains"][2:]:
        role = c["role"]
        if role == "assistant":
            content = c["content"]                       # KeyError if absent -> crash
            if content is not None and not is_str(content):
                raise RefCrash("assistant content not str/null")
            span = content + "\n" if content is not None else ""
            if "function_call" not in c:
                continue                                  # dropped, nothing emitted
            fc = c["function_call"]
            if not isinstance(fc, dict):
                raise RefCrash("function_call not an object")
            name = fc["name"]
            if name == FINISH:
                kind, fa = finish_outcome(content, fc["arguments"])
                if kind == "give_up":
                    conv.append({"from": "assistant", "value": span + NEXT_GIVE_UP})
                else:
                    conv.append({"from": "assistant", "value": span + NEXT_CONCLUSION})
                    conv.append({"from": "conclusion", "value": fa})
            else:
                args = fc["arguments"]
                if not is_str(name) or not is_str(args):
                    raise RefCrash("call name/arguments not str")
                conv.append({"from": "assistant", "value": span + NEXT_CALLER})
                conv.append({"from": "caller", "value": "Action: " + name + "\nAction Input: " + args})
        elif role == "user":
            conv.append({"from": "user", "value": c["content"]})   # raw value, may be null
        elif role == "function":
            conv.append({"from": "observation", "value": observation_value(c["content"])})
        # any other role (e.g. a later "system"): ignored
    return {"tools": d["tools"], "instruction": d["instruction"], "conversations": conv}


def stage2(records):
    return [stage2_record(d) for d in records]


# ------------------------------------------------------------------- checks
def first_diff(a, b, path="$"):
    if type(a) != type(b):
        return "%s: type %s != %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            return "%s: keys %s != %s" % (path, list(a.keys()), list(b.keys()))
        for k in a:
            r = first_diff(a[k], b[k], path + "." + k)
            if r:
                return r
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            r = first_diff(x, y, "%s[%d]" % (path, i))
            if r:
                return r
        if len(a) != len(b):
            return "%s: len %d != %d" % (path, len(a), len(b))
        return None
    return None if a == b else "%s: %r != %r" % (path, str(a)[:80], str(b)[:80])


def check_fixture(data_root):
    raw = os.path.join(data_root, "alpha-umi-toolbench/train-example/raw_data")
    s1 = json.load(open(os.path.join(raw, "raw_data_stage_1.json"), encoding="utf-8"))
    s2_bytes = open(os.path.join(raw, "raw_data_stage_2.json"), "rb").read()
    s2 = json.loads(s2_bytes)
    out = stage2(s1)
    print("(a) stage 2 on raw_data_stage_1.json (%d records) vs raw_data_stage_2.json (%d records)" % (len(s1), len(s2)))
    n_ok = 0
    for i, (x, y) in enumerate(zip(out, s2)):
        diff = first_diff(x, y)
        n_ok += diff is None
        print("  record %2d: %s  (%d turns)" % (i, "MATCH" if diff is None else "DIFF " + diff, len(x["conversations"])))
    print("  => %d/%d records match (json-parsed)" % (n_ok, len(s2)))
    same_bytes = py_json_dump(out).encode("utf-8") == s2_bytes
    print("  => whole-file bytes identical to json.dump(indent=2):", same_bytes)
    # stage-1 fixture round trip: serialisation convention check
    s1_bytes = open(os.path.join(raw, "raw_data_stage_1.json"), "rb").read()
    print("  => raw_data_stage_1.json == json.dump(parsed, indent=2):", py_json_dump(s1).encode() == s1_bytes)
    return n_ok == len(s2) and len(out) == len(s2) and same_bytes


def check_stage1_examples(data_root):
    dd = os.path.join(data_root, "toolbench-data-example")
    tq = os.path.join(dd, "test_query_ids")
    if os.path.isdir(tq):
        test_ids = load_test_ids(dd)
    else:
        test_ids = []
        print("(b) no test_query_ids/ in %s: using an empty test-id list" % dd)
    report = []
    written, everything = stage1(dd, test_ids, report=report, limit=STAGE1_LIMIT)
    for g, fn, what in report:
        print("  %s/%s: %s" % (g, fn, what))
    print("  => %d files, %d records built, %d written (limit %d)" % (len(report), len(everything), len(written), STAGE1_LIMIT))
    # shape check against the fixture's conventions
    problems = 0
    for i, r in enumerate(everything):
        if list(r.keys()) != ["tools", "instruction", "chains"]:
            problems += 1; print("  record %d: bad keys %s" % (i, list(r.keys())))
        for t in r["tools"]:
            if list(t.keys()) != ["Name", "function", "input"] or len(t["Name"]) > 64 or len(t["function"]) > 256:
                problems += 1; print("  record %d: bad tool %r" % (i, t))
        if r["chains"][0]["role"] != "system" or r["chains"][1]["role"] != "user":
            problems += 1; print("  record %d: chains do not start system,user" % i)
    # and push them through stage 2
    roles = {}
    n2 = 0
    for i, r in enumerate(everything):
        try:
            rec = stage2_record(r)
            n2 += 1
            for t in rec["conversations"]:
                roles[t["from"]] = roles.get(t["from"], 0) + 1
        except (RefCrash, KeyError, TypeError) as e:
            problems += 1; print("  record %d: stage 2 failed: %r" % (i, e))
    print("  => shape problems / stage-2 failures: %d; stage 2 converted %d records; turns by role: %s" % (problems, n2, roles))
    return problems == 0


def check_edge_cases():
    """Hand-derived expectations from the reference code (spec section 3)."""
    cases = [
        # (content, arguments) -> expected finish_outcome
        ((None, '{"return_type": "give_answer", "final_answer": "x"}'), ("answer", "x")),
        (("c", '{"return_type": "give_answer"}'), ("answer", "none")),
        (("c", '{"return_type": "give_up_and_restart"}'), ("give_up", None)),
        (("c", {"return_type": "give_answer", "final_answer": 3}), ("answer", 3)),
        (("c", '{"final_answer": "y"}'), ("answer", "y")),                    # no return_type -> except, marker
        (("c", '{"return_type": "give_answer", "final_answer": "a\\nb'), ("answer", "a\\nb")),  # truncated
        (("c", '{"final_answer": "abc"\n}'), ("answer", 'abc"\n')),          # whitespace blocks 2nd strip
        (("c", '{"final_answer": "abc" } }'), ("answer", 'abc" } ')),
        (("c", 'I give_up_and_restart'), ("give_up", None)),
        (("thought", 'not json'), ("answer", "thought")),
        ((None, 'not json'), ("answer", "none")),
        (("c", '{"final_answer":"nospace"}'), ("answer", "c")),               # marker needs the space
        (("c", '{"return_type": "give_answer", "final_answer": NaN}'), ("answer", float("nan"))),
        (("c", '[1]'), ("answer", "c")),                                      # parses, not a dict -> except path
    ]
    bad = 0
    for (content, args), exp in cases:
        got = finish_outcome(content, args)
        same = got == exp or (isinstance(exp[1], float) and exp[1] != exp[1] and got[1] != got[1])
        if not same:
            bad += 1; print("  finish %r %r: got %r expected %r" % (content, args, got, exp))
    obs_cases = [
        ('{"error": "", "response": "ok"}', "ok"),
        ('{"error": "", "response": {"a": 1}}', {"a": 1}),
        ('{"error": "", "response": "abc...', ' "abc...'),
        ('no marker here', ""),
        ('"{\\"response\\": 5}"', " 5}"),                                   # JSON string literal: decoded first
        ('{"response": NaN}', float("nan")),
    ]
    for content, exp in obs_cases:
        got = observation_value(content)
        same = got == exp or (isinstance(exp, float) and exp != exp and got != got)
        if not same:
            bad += 1; print("  obs %r: got %r expected %r" % (content, got, exp))
    for content in ['{"error": ""}', '[1, 2]', 'null', '3']:
        try:
            observation_value(content); bad += 1; print("  obs %r: expected RefCrash" % content)
        except RefCrash:
            pass
    print("(c) edge cases: %s" % ("all as expected" if bad == 0 else "%d unexpected" % bad))
    return bad == 0


def find_data_root(cli):
    here = os.path.dirname(os.path.abspath(__file__))
    for p in [cli, os.path.join(here, "../../../shared/data"), "../shared/data"]:
        if p and os.path.isdir(os.path.join(p, "alpha-umi-toolbench")):
            return p
    sys.exit("data root not found; pass --data DIR")


if __name__ == "__main__":
    cli = sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else None
    root = find_data_root(cli)
    if "--dump-stage1" in sys.argv:   # expected stage-1 bytes for the example answers (sorted order, no test ids)
        written, _ = stage1(os.path.join(root, "toolbench-data-example"), [], order=sorted)
        with open(sys.argv[sys.argv.index("--dump-stage1") + 1], "w") as f:
            f.write(py_json_dump(written))
    if "--dump-stage2" in sys.argv:   # stage 2 of those records (raw_data_stage_2.json records)
        written, _ = stage1(os.path.join(root, "toolbench-data-example"), [], order=sorted)
        with open(sys.argv[sys.argv.index("--dump-stage2") + 1], "w") as f:
            f.write(py_json_dump(stage2(written)))
    ok_a = check_fixture(root)
    print()
    ok_b = check_stage1_examples(root)
    print()
    ok_c = check_edge_cases()
    sys.exit(0 if (ok_a and ok_b and ok_c) else 1)

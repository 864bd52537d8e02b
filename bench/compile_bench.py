"""Rule-automata construction time on MaskBench JSON schemas: the Numba path beside the
pure-Python reference path, in the same run, on the same grammars.

For a sample of schemas, each schema is turned into the grammar IR
(``Grammar.from_json_schema``; schemas it refuses are skipped), then ``build_rule_automata``
runs with ``method="fast"`` (best of ``--repeat`` runs) and ``method="reference"``; the two
packed blobs must be identical. Schemas whose automata pass ``--max-states`` are left out of
the reference run (huge repetitions are unrolled today; counter blocks will take them).

``--cold`` also measures, in a new process with a warm Numba cache, the time of the first
``build_rule_automata`` call (kernel loading included) and of the second.

Usage::

    python bench/compile_bench.py --data ../shared/jsonschemabench --per-category 15 \\
        --out bench/results/compile_bench.json

Prints per method p50/p90/p99/max of the build time, the per-schema speed-up, automaton
sizes, and writes every row as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

# bench/ holds a coverage.py that shadows the `coverage` package numba imports: keep the
# folder off the import path, and make the checkout importable.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from grammask.automata.rule_automata import build_rule_automata
from grammask.errors import GrammarError
from grammask.grammar.ir import Grammar

DEFAULT_EXCLUDE = ("Snowplow/sp_222_Normalized.json",)


def _pick(data: str, per_category: int, seed: int, categories: list[str] | None) -> list[str]:
    rng = random.Random(seed)
    out = []
    for cat in sorted(os.listdir(data)):
        folder = os.path.join(data, cat)
        if not os.path.isdir(folder) or (categories and cat not in categories):
            continue
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
        rng.shuffle(names)
        out += [f"{cat}/{n}" for n in names[:per_category]]
    return out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]


def _timed_build(grammar: Grammar, method: str, repeat: int, clock):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t = clock()
        result = build_rule_automata(grammar, method=method)
        best = min(best, clock() - t)
    return best, result


_COLD_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from grammask.automata.rule_automata import build_rule_automata
from grammask.grammar.ir import Grammar
t1 = time.perf_counter()
g = Grammar.from_json_schema(json.load(open(sys.argv[1]))["schema"])
t2 = time.perf_counter()
build_rule_automata(g)
t3 = time.perf_counter()
build_rule_automata(g)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "schema_to_ir_s": t2 - t1, "first_build_s": t3 - t2,
                  "second_build_s": t4 - t3}))
"""


def _cold(path: str) -> dict:
    root = os.path.dirname(_HERE)
    runs = []
    for _ in range(2):  # the first run may fill the Numba cache
        out = subprocess.run([sys.executable, "-c", _COLD_SCRIPT, path], cwd=root,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"first_process": runs[0], "warm_cache_process": runs[1]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join("..", "shared", "jsonschemabench"))
    ap.add_argument("--per-category", type=int, default=15)
    ap.add_argument("--categories", default="", help="comma-separated; default all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="fast,reference")
    ap.add_argument("--repeat", type=int, default=3, help="fast runs per schema (best kept)")
    ap.add_argument("--max-states", type=int, default=100_000,
                    help="skip the reference run above this many states")
    ap.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process time, steadier on a loaded machine")
    ap.add_argument("--cold", action="store_true", help="measure a new process too")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    methods = [m for m in args.methods.split(",") if m]
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    exclude = {e for e in args.exclude.split(",") if e}
    cats = [c for c in args.categories.split(",") if c] or None
    names = [n for n in _pick(args.data, args.per_category, args.seed, cats) if n not in exclude]

    # warm up the kernels (their compile or cache load is reported by --cold, not here)
    build_rule_automata(Grammar.from_json_schema({"type": "object"}))

    rows = []
    for name in names:
        with open(os.path.join(args.data, name)) as f:
            schema = json.load(f)["schema"]
        try:
            grammar = Grammar.from_json_schema(schema)
        except Exception as exc:  # noqa: BLE001 - the front-end refuses it: skip
            rows.append({"schema": name, "skipped": type(exc).__name__})
            continue
        row: dict = {"schema": name}
        blobs = {}
        for method in methods:
            if method != "fast" and row.get("states", 0) > args.max_states:
                row[f"{method}_s"] = None
                continue
            try:
                dt, ra = _timed_build(grammar, method, args.repeat if method == "fast" else 1,
                                      clock)
            except GrammarError as exc:
                row[f"{method}_error"] = str(exc)[:200]
                continue
            row[f"{method}_s"] = dt
            row["states"] = ra.n_states
            row["rules"] = len(ra.rule_names)
            row["classes"] = ra.n_classes
            blobs[method] = ra.blob
        if len(blobs) > 1:
            first = next(iter(blobs.values()))
            row["same_blob"] = all(b.shape == first.shape and (b == first).all()
                                   for b in blobs.values())
        rows.append(row)
        print(f"{name:60s} " + " ".join(
            f"{m}={row[m + '_s'] * 1e3:8.1f}ms" for m in methods if row.get(m + "_s")
        ) + f" states={row.get('states', '-')}", file=sys.stderr)

    built = [r for r in rows if "skipped" not in r]
    summary: dict = {"schemas": len(names), "built": len(built),
                     "skipped": len(rows) - len(built)}
    print(f"\n{len(names)} schemas, {len(built)} built, {len(rows) - len(built)} refused by "
          f"the front-end; {args.clock} clock\n")
    print(f"{'method':10s} {'n':>5s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} "
          f"{'max ms':>9s} {'mean ms':>9s}")
    for method in methods:
        ts = [r[f"{method}_s"] * 1e3 for r in built if r.get(f"{method}_s")]
        stats = {"n": len(ts), "p50_ms": _pct(ts, 50), "p90_ms": _pct(ts, 90),
                 "p99_ms": _pct(ts, 99), "max_ms": max(ts, default=float("nan")),
                 "mean_ms": sum(ts) / len(ts) if ts else float("nan")}
        summary[method] = stats
        print(f"{method:10s} {stats['n']:5d} {stats['p50_ms']:9.2f} {stats['p90_ms']:9.2f} "
              f"{stats['p99_ms']:9.2f} {stats['max_ms']:9.2f} {stats['mean_ms']:9.2f}")
    if "fast" in methods and "reference" in methods:
        both = [r for r in built if r.get("fast_s") and r.get("reference_s")]
        ratio = [r["reference_s"] / r["fast_s"] for r in both]
        summary["speedup"] = {"n": len(ratio), "p10": _pct(ratio, 10), "p50": _pct(ratio, 50),
                              "p90": _pct(ratio, 90),
                              "total": sum(r["reference_s"] for r in both)
                              / max(1e-12, sum(r["fast_s"] for r in both))}
        mism = [r["schema"] for r in both if not r.get("same_blob", True)]
        summary["blob_mismatches"] = mism
        s = summary["speedup"]
        print(f"\nspeed-up reference/fast per schema: p10 {s['p10']:.1f}x  p50 {s['p50']:.1f}x  "
              f"p90 {s['p90']:.1f}x; total time {s['total']:.1f}x; "
              f"identical blobs: {len(both) - len(mism)}/{len(both)}")
    states = [r["states"] for r in built if "states" in r]
    summary["states"] = {"p50": _pct(states, 50), "p90": _pct(states, 90),
                         "max": max(states, default=0)}
    print(f"states per grammar: p50 {summary['states']['p50']}  p90 {summary['states']['p90']}  "
          f"max {summary['states']['max']}")
    errors = [r["schema"] for r in built if any(k.endswith("_error") for k in r)]
    if errors:
        print(f"build errors: {len(errors)} ({', '.join(errors[:5])}...)")
    if args.cold:
        probe = next((r["schema"] for r in built if r.get("fast_s")), None)
        if probe:
            summary["cold"] = _cold(os.path.join(os.path.abspath(args.data), probe))
            w = summary["cold"]["warm_cache_process"]
            print(f"\nnew process, warm Numba cache ({probe}): import {w['import_s'] * 1e3:.0f} ms, "
                  f"first build {w['first_build_s'] * 1e3:.0f} ms, "
                  f"second build {w['second_build_s'] * 1e3:.1f} ms")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()

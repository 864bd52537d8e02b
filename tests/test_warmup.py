"""grammask.warmup(): after it, compiling other grammars and filling their masks loads no
kernel a first time (each would cost a first request milliseconds). Run in a new process, so
that kernels loaded by earlier tests do not hide one the warm-up misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json, random, sys
import numpy as np
import grammask as gm
from grammask.mask_kernels.bitmask import unpack_bitmask
from numba.core.registry import CPUDispatcher

seconds = gm.warmup()
assert seconds > 0


def loaded():
    out = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("grammask"):
            for k, v in list(vars(mod).items()):
                if isinstance(v, CPUDispatcher):
                    out[name + "." + k] = len(v.overloads)
    return out


before = loaded()
# another vocabulary (byte-level spellings, padding ids), other grammars
alphabet = [chr(c) for c in range(33, 127)]
vocab = ["<eos>"] + alphabet + [a + b for a in "ab\"{:, " for b in alphabet] + [
    "Ġ", "ĠĠ", "Ġ\"", "true", "false", "null", "12", "3.5", "Ċ"]
info = gm.TokenizerInfo(vocab, vocab_type=gm.VocabType.BYTE_LEVEL, vocab_size=len(vocab) + 5,
                        stop_token_ids=[0])
compiler = gm.GrammarCompiler(info, max_threads=1)
grammars = [
    compiler.compile_json_schema({"type": "array", "maxItems": 40, "items": {
        "type": "object", "properties": {"id": {"type": "integer", "minimum": 3},
                                         "note": {"type": "string", "maxLength": 5000},
                                         "tag": {"enum": ["x", "yy", "zzz"]}},
        "required": ["id"]}}),
    compiler.compile_json_schema({"anyOf": [{"type": "string", "pattern": "^a+b?$"},
                                            {"type": "number", "maximum": 1.5}]},
                                 any_whitespace=False),
    compiler.compile_grammar('root ::= item ("," item)*\nitem ::= [a-z]+ | "(" root ")"'),
    compiler.compile_regex(r"[0-9]{2,5}(\.[0-9]+)?"),
]
rng = random.Random(1)
bitmask = gm.allocate_token_bitmask(1, info.vocab_size)
matchers = []
for k in range(40):  # a batch big enough for the fill pool
    m = gm.GrammarMatcher(grammars[k % len(grammars)])
    for _ in range(40 if k < len(grammars) else k % 7):
        m.fill_next_token_bitmask(bitmask)
        allowed = np.flatnonzero(unpack_bitmask(bitmask[0], info.vocab_size)).tolist()
        if not allowed or m.is_terminated():
            break
        assert m.accept_token(rng.choice(allowed))
    matchers.append(m)
rows = gm.allocate_token_bitmask(len(matchers), info.vocab_size)
gm.BatchGrammarMatcher().batch_fill_next_token_bitmask(matchers, rows)  # as warmup()
after = loaded()
print(json.dumps(sorted(k for k, n in after.items() if n != before.get(k, 0))))
'''


def test_warmup_leaves_no_kernel_to_load():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=1200, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    newly_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert newly_loaded == [], f"kernels the warm-up did not load: {newly_loaded}"

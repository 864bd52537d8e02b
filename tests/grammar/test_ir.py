"""IR nodes: equality and hashing by value (kept hashes of composite nodes), across pickling
into a process whose string hashes differ."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from grammask.grammar.ir import (
    Alt,
    Repeat,
    Seq,
    alt,
    chars,
    intern_node,
    lit,
    ref,
    refs_of,
    rep,
    seq,
    star,
)


def _expr():
    return seq(lit("{"), star(alt(ref("key"), chars("a-z"))), rep(ref("ws"), 0, 20),
               alt(lit("}"), seq(lit(","), ref("more"))))


def _copy(e):
    """``e`` rebuilt through the constructors (not shared with the helpers' nodes)."""
    if isinstance(e, (Seq, Alt)):
        return type(e)(tuple(_copy(i) for i in e.items))
    if isinstance(e, Repeat):
        return Repeat(_copy(e.item), e.min, e.max)
    return e


def test_equal_trees_hash_equal_and_differ_by_type_and_bounds():
    a, b = _expr(), _copy(_expr())
    assert a is not b and a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    items = (lit("x"), ref("y"))
    assert Seq(items) != Alt(items)
    assert Repeat(lit("x"), 0, 3) != Repeat(lit("x"), 0, 4)
    assert Repeat(lit("x"), 0, None) == Repeat(lit("x"), 0, None)
    assert seq(lit("a"), ref("b")) != seq(lit("a"), ref("c"))


def test_helpers_share_equal_nodes():
    a, b = _expr(), _expr()
    assert a is b
    assert intern_node(_copy(a)) is a
    assert seq(lit("a"), ref("b")) is not seq(lit("a"), ref("c"))
    # the shared node's kept facts are the same for every rule that holds it
    assert refs_of(a) == {"key", "ws", "more"} and refs_of(b) is refs_of(a)


def test_pickled_in_another_process_hashes_as_built_here():
    code = ("import pickle, sys\n"
            "from tests.grammar.test_ir import _expr\n"
            "sys.stdout.buffer.write(pickle.dumps(_expr()))\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                         cwd=root, check=True).stdout
    there = pickle.loads(out)
    here = _expr()
    assert there == here and hash(there) == hash(here)
    assert {here: "ok"}[there] == "ok"

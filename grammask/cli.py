"""The ``grammask`` command line: ``grammask generate "prompt"`` and friends.

Each subcommand has an ``_add_<name>_parser`` that declares its options and a ``_run_<name>``
that executes it. ``generate`` groups its options (model, sampling, constraints) so that
constraint options (schema, grammar, regex) slot into their own group.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _add_generate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="generate text with the bundled runtime (streams to stdout)",
        description="Generate text from a prompt with a GGUF model on the CPU; the text is "
        "streamed to stdout as it is decoded.",
    )
    p.add_argument("prompt", help="the prompt (a user message unless --raw)")
    model = p.add_argument_group("model")
    model.add_argument(
        "--model",
        "-m",
        default=None,
        help="path of a .gguf file (default: bundled SmolLM2-135M-Instruct Q4_1)",
    )
    model.add_argument("--threads", "-t", type=int, default=None, help="CPU threads")
    model.add_argument(
        "--raw",
        action="store_true",
        help="use the prompt as is instead of wrapping it in the chat template",
    )
    model.add_argument("--system", default=None, help="system message (chat mode)")
    samp = p.add_argument_group("sampling")
    samp.add_argument("--max-tokens", "-n", type=int, default=256)
    samp.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    samp.add_argument("--top-p", type=float, default=0.95)
    samp.add_argument("--top-k", type=int, default=40)
    samp.add_argument("--seed", type=int, default=None)
    samp.add_argument(
        "--stop", action="append", default=None, help="stop string (repeatable); not printed"
    )
    cons = p.add_argument_group("constraints", "restrict the output to a language")
    excl = cons.add_mutually_exclusive_group()
    excl.add_argument("--schema", metavar="FILE",
                      help="JSON Schema file: the output is JSON valid against it")
    excl.add_argument("--grammar", metavar="FILE", help="Lark or GBNF grammar file")
    excl.add_argument("--regex", metavar="PATTERN", help="the whole output matches PATTERN")
    cons.add_argument("--no-jump-forward", action="store_true",
                      help="sample every token, also those the grammar forces")
    p.set_defaults(run=_run_generate)
    return p


def _generate_prompt(args: argparse.Namespace):
    if args.raw:
        return args.prompt
    messages = [{"role": "system", "content": args.system}] if args.system else []
    return messages + [{"role": "user", "content": args.prompt}]


def _generate_kwargs(args: argparse.Namespace) -> dict:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
    }


def _constraint_kwargs(args: argparse.Namespace) -> dict:
    if args.schema:
        with open(args.schema, encoding="utf-8") as fh:
            text = fh.read()
        try:
            return {"schema": json.loads(text)}
        except json.JSONDecodeError as e:
            raise ValueError(f"{args.schema}: not JSON: {e}") from None
    if args.grammar:
        with open(args.grammar, encoding="utf-8") as fh:
            return {"grammar": fh.read()}
    if args.regex is not None:
        return {"regex": args.regex}
    return {}


def _run_generate(args: argparse.Namespace) -> int:
    from .llm_runtime import LLM

    constraint = _constraint_kwargs(args)  # read (and fail) before loading the model
    llm = LLM(args.model, n_threads=args.threads)
    kwargs = _generate_kwargs(args)
    if constraint:
        kwargs["jump_forward"] = not args.no_jump_forward
    stream = llm.generate(_generate_prompt(args), stream=True, **constraint, **kwargs)
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    result = stream.result
    if result is not None and result.finish_reason == "length" and constraint:
        print(f"grammask: stopped at --max-tokens {args.max_tokens} before the output was "
              "complete; raise --max-tokens", file=sys.stderr)
        return 3
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grammask",
        description="Structured generation for LLMs: grammars, JSON Schemas, "
        "regexes compiled to token masks, and a bundled GGUF runtime.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``grammask`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from .errors import GrammaskError

    try:
        return args.run(args)
    except (GrammaskError, FileNotFoundError, ValueError) as e:
        print(f"grammask: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

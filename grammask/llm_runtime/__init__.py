"""The bundled runtime: GGUF models (llama, qwen2) on quantized Numba CPU kernels.

``LLM`` is the entry point; ``Transformer`` is the model with its KV cache (``forward``,
``truncate``), ``sample_token`` the sampler, ``tokenizer_from_gguf_metadata`` the tokenizer.
"""

import os as _os

# Numba's parallel loops run on libgomp when available. Its default is to spin ~300k
# iterations at every barrier, which is fastest on an idle machine and a disaster on a busy
# one: a spinning worker steals the core its descheduled peer needs (measured on a loaded
# 2-core machine, 2 threads: 1.7 tok/s decoding with the default, 28 with a short spin, 35
# passive). A short spin keeps idle-machine hand-offs cheap. Read when libgomp loads, so
# this only acts if nothing loaded it earlier; set either variable yourself to override.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"

from .gguf_file import GGUFFile
from .llm import LLM, StepHook
from .model_files import find_default_model, resolve_model_path
from .sampling import sample_token
from .tokenizer import GGUFTokenizerInfo, render_chat, tokenizer_from_gguf_metadata
from .transformer import ModelConfig, Transformer

__all__ = [
    "LLM",
    "GGUFFile",
    "GGUFTokenizerInfo",
    "ModelConfig",
    "StepHook",
    "Transformer",
    "find_default_model",
    "render_chat",
    "resolve_model_path",
    "sample_token",
    "tokenizer_from_gguf_metadata",
]

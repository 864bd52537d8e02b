"""The bundled runtime: GGUF models (llama, qwen2) on quantized Numba CPU kernels.

``LLM`` is the entry point; ``Transformer`` is the model with its KV cache (``forward``,
``truncate``), ``sample_token`` the sampler, ``tokenizer_from_gguf_metadata`` the tokenizer.
"""

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

"""engine_adapter: the seams to the outside (tokenizer converters, the transformers
LogitsProcessor).

``GrammaskLogitsProcessor`` is loaded on first access, so that importing grammask does not
import torch.
"""

from typing import Any

__all__ = ["GrammaskLogitsProcessor"]


def __getattr__(name: str) -> Any:
    if name == "GrammaskLogitsProcessor":
        from .hf_logits_processor import GrammaskLogitsProcessor

        return GrammaskLogitsProcessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

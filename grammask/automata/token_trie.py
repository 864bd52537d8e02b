"""The vocabulary as the mask kernels see it: token byte strings sorted into a flat trie.

Sorting tokens by their bytes puts every token right after its prefixes, so one pass over
the sorted list visits the vocabulary as a depth-first trie walk: the parser state of a
shared prefix is reused, and a rejected prefix skips all tokens that extend it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..mask_kernels.matcher_kernels import pack_trie
from ..mask_kernels.trie import build_lcp, build_skip


@dataclass(frozen=True, eq=False)
class TokenTrie:
    """Flat arrays over the tokens a grammar can produce (special tokens left out)."""

    tok_bytes: np.ndarray  # uint8: the sorted tokens' bytes, concatenated
    tok_ptr: np.ndarray  # int32[n + 1]: token i is tok_bytes[tok_ptr[i]:tok_ptr[i+1]]
    sorted_ids: np.ndarray  # int32[n]: token id of sorted token i
    lcp: np.ndarray  # int32[n]: common prefix length with sorted token i - 1
    skip: np.ndarray  # int32[sum of lengths]: see mask_kernels.trie.build_skip
    id_ptr: np.ndarray  # int32[vocab_size]: start of token id's bytes in tok_bytes, -1 if none
    id_len: np.ndarray  # int32[vocab_size]: byte length of token id (0 for special tokens)
    stop_ids: np.ndarray  # int32: stop token ids
    vocab_size: int
    universe: np.ndarray  # int32 bitmask row with the bit of every token in the trie set
    blob: np.ndarray  # the int32 arrays above packed for the kernels (matcher_kernels.pack_trie)

    @cached_property
    def max_token_len(self) -> int:
        """Bytes of the longest token (1 when there is none)."""
        lengths = np.diff(self.tok_ptr)
        return int(lengths.max()) if len(lengths) else 1

    @property
    def memory_size_bytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self.tok_bytes, self.blob, self.stop_ids)
        )


_lock = threading.Lock()
_shared: weakref.WeakKeyDictionary[TokenTrie, tuple[dict, threading.Lock]] = (
    weakref.WeakKeyDictionary())


def shared_store(trie: TokenTrie) -> tuple[dict, threading.Lock]:
    """A dict (and its lock) for results shared by every grammar of this vocabulary."""
    with _lock:
        store = _shared.get(trie)
        if store is None:
            store = _shared[trie] = ({}, threading.Lock())
    return store


def token_trie_of(tokenizer_info) -> TokenTrie:
    """The (cached) trie of a TokenizerInfo; built once per tokenizer, thread-safe."""
    trie = getattr(tokenizer_info, "_gm_token_trie", None)
    if trie is not None:
        return trie
    with _lock:
        trie = getattr(tokenizer_info, "_gm_token_trie", None)
        if trie is None:
            trie = build_token_trie(
                tokenizer_info.decoded_vocab,
                tokenizer_info.vocab_size,
                tokenizer_info.special_token_ids,
                tokenizer_info.stop_token_ids,
            )
            object.__setattr__(tokenizer_info, "_gm_token_trie", trie)
    return trie


def build_token_trie(decoded_vocab, vocab_size: int, special_ids, stop_ids) -> TokenTrie:
    special = set(int(i) for i in special_ids) | set(int(i) for i in stop_ids)
    ids = [
        i
        for i in range(min(len(decoded_vocab), vocab_size))
        if decoded_vocab[i] and i not in special
    ]
    ids.sort(key=decoded_vocab.__getitem__)
    toks = [decoded_vocab[i] for i in ids]
    lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
    tok_ptr = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=tok_ptr[1:])
    tok_bytes = np.frombuffer(b"".join(toks), dtype=np.uint8).copy()
    sorted_ids = np.asarray(ids, dtype=np.int32)
    lcp = build_lcp(tok_bytes, tok_ptr)
    skip = build_skip(tok_ptr, lcp)
    id_ptr = np.full(vocab_size, -1, dtype=np.int32)
    id_len = np.zeros(vocab_size, dtype=np.int32)
    id_ptr[sorted_ids] = tok_ptr[:-1]
    id_len[sorted_ids] = lengths
    stops = np.asarray(sorted(set(int(i) for i in stop_ids if 0 <= int(i) < vocab_size)),
                       dtype=np.int32)
    universe = np.zeros((vocab_size + 31) // 32, dtype=np.uint32)
    np.bitwise_or.at(universe, sorted_ids >> 5,
                     np.left_shift(np.uint32(1), (sorted_ids & 31).astype(np.uint32)))
    blob, views = pack_trie(tok_ptr, sorted_ids, lcp, skip, id_ptr, id_len,
                            universe.view(np.int32), vocab_size)
    tok_ptr, sorted_ids, lcp, skip, id_ptr, id_len, universe = views
    return TokenTrie(tok_bytes, tok_ptr, sorted_ids, lcp, skip, id_ptr, id_len, stops,
                     int(vocab_size), universe, blob)

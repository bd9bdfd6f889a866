"""Deterministic token generation.

The next token is a pure function of the seed and the whole token context (prompt plus
everything generated so far): ``blake2b(key=seed, data=uint32-LE context)``, read as an
integer modulo the tokenizer's generation vocabulary. Because a streaming hash of a
concatenation equals the hash of the whole, a request resumed elsewhere with
``prompt + generated`` continues exactly as the original would have, and each step
costs O(1).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from enginesim.tokenizer import Tokenizer


def _pack(tokens: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(tokens)}I", *(t & 0xFFFFFFFF for t in tokens))


class TokenStream:
    """Yields the deterministic continuation of a token context."""

    def __init__(self, tokenizer: Tokenizer, seed: int, context: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._vocab = tokenizer.generation_vocab_size()
        self._hash = hashlib.blake2b(key=seed.to_bytes(16, "big", signed=True), digest_size=8)
        self._hash.update(_pack(context))

    def next_token(self) -> int:
        value = int.from_bytes(self._hash.copy().digest(), "big")
        token = self._tokenizer.generation_token(value % self._vocab)
        self._hash.update(_pack((token,)))
        return token

    def extend(self, tokens: Sequence[int]) -> None:
        """Append tokens to the context without generating them."""
        self._hash.update(_pack(tokens))


def continuation(tokenizer: Tokenizer, seed: int, context: Sequence[int], n: int) -> list[int]:
    stream = TokenStream(tokenizer, seed, context)
    return [stream.next_token() for _ in range(n)]

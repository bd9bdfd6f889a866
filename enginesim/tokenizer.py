"""Deterministic tokenizers shared by the engine simulator and the router.

Two tokenizers, chosen by ``--tokenizer``:

``whitespace``
    ``text.split()``; each word is one token. Words of the fixed vocabulary
    (:data:`VOCAB`, ``VOCAB_SIZE`` syllable words such as ``"bako"``) map to their index;
    a word written ``<N>`` maps to id ``N`` (this is how :func:`decode` prints ids
    outside the vocabulary, so ids round-trip); any other word maps to
    ``VOCAB_SIZE + blake2b(word) mod HASHED_SPACE``. Decoding joins words with a
    leading space each (``" bako tumi"``), so ``tokenize(prompt + decode(generated))
    == tokenize(prompt) + generated`` whenever the prompt does not end inside a word.

``bytes``
    UTF-8 bytes; token id = byte value (0..255). Decoding is the inverse
    (invalid UTF-8 is replaced). Generated tokens are lowercase letters and spaces.

Everything here is pure and process-independent (no salted ``hash()``), so a router
that imports this module computes exactly the token ids an engine computes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

_CONSONANTS = "bdfgklmnprstvzhjw"  # 17
_VOWELS = "aeiou"  # 5
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]  # 85
VOCAB: tuple[str, ...] = tuple(a + b for a in _SYLLABLES for b in _SYLLABLES)  # 7225 words
VOCAB_SIZE = len(VOCAB)
HASHED_SPACE = 1 << 20
_WORD_ID = {w: i for i, w in enumerate(VOCAB)}
_ID_WORD = re.compile(r"^<(\d+)>$")

# Generated text in bytes mode stays printable and re-tokenizes to the same ids.
BYTES_GENERATION_ALPHABET: tuple[int, ...] = tuple(b" abcdefghijklmnopqrstuvwxyz")


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Iterable[int]) -> str: ...

    def decode_token(self, token_id: int) -> str: ...

    def generation_vocab_size(self) -> int: ...

    def generation_token(self, index: int) -> int: ...


@lru_cache(maxsize=1 << 18)
def word_id(word: str) -> int:
    """The token id of one whitespace-free word (cached: prompts repeat words a lot)."""
    known = _WORD_ID.get(word)
    if known is not None:
        return known
    if word[0] == "<":
        m = _ID_WORD.match(word)
        if m:
            return int(m.group(1))
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return VOCAB_SIZE + int.from_bytes(digest, "big") % HASHED_SPACE


class WhitespaceTokenizer:
    """One token per whitespace-separated word (see the module docstring)."""

    name = "whitespace"

    def encode(self, text: str) -> list[int]:
        return [word_id(word) for word in text.split()]

    def decode_token(self, token_id: int) -> str:
        if 0 <= token_id < VOCAB_SIZE:
            return " " + VOCAB[token_id]
        return f" <{token_id}>"

    def decode(self, token_ids: Iterable[int]) -> str:
        return "".join(self.decode_token(t) for t in token_ids)

    def generation_vocab_size(self) -> int:
        return VOCAB_SIZE

    def generation_token(self, index: int) -> int:
        return index


class BytesTokenizer:
    """One token per UTF-8 byte."""

    name = "bytes"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_token(self, token_id: int) -> str:
        return bytes([token_id & 0xFF]).decode("utf-8", errors="replace")

    def decode(self, token_ids: Iterable[int]) -> str:
        return bytes(t & 0xFF for t in token_ids).decode("utf-8", errors="replace")

    def generation_vocab_size(self) -> int:
        return len(BYTES_GENERATION_ALPHABET)

    def generation_token(self, index: int) -> int:
        return BYTES_GENERATION_ALPHABET[index]


TOKENIZERS: dict[str, type[WhitespaceTokenizer] | type[BytesTokenizer]] = {
    "whitespace": WhitespaceTokenizer,
    "bytes": BytesTokenizer,
}


def get_tokenizer(name: str) -> Tokenizer:
    """Return the tokenizer called ``name`` ("whitespace" or "bytes")."""
    try:
        return TOKENIZERS[name]()
    except KeyError:
        raise ValueError(f"tokenizer: unknown tokenizer {name!r}; expected one of {sorted(TOKENIZERS)}") from None


def message_text(content: Any) -> str:
    """The text of a chat message ``content``: a string or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    raise ValueError("messages.content: expected a string or a list of content parts")


def apply_chat_template(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """Render chat messages to the prompt text the engine tokenizes.

    Each message becomes ``"<|role|> content"`` on its own line; with
    ``add_generation_prompt`` a final ``"<|assistant|>"`` line is added. Routers
    that want the engine's token ids for a chat request call this, then
    ``get_tokenizer(...).encode``.
    """
    lines = [f"<|{m.get('role', 'user')}|> {message_text(m.get('content'))}" for m in messages]
    if add_generation_prompt:
        lines.append("<|assistant|>")
    return "\n".join(lines)

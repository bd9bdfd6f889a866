"""Request tokenization for the precise prefix index, loaded from a named plugin.

`"enginesim:<name>"` uses the engine simulator's deterministic tokenizer and chat
template (the exact ids the engines compute); `"hf:<tokenizer.json or model dir>"` a Hugging
Face tokenizer with the model's chat template (router.hf_tokenizer); `"<module>:<factory>"`
calls any factory that returns a `(ParsedRequest) -> list[int]` function.
The import is dynamic so the router carries no static dependency on any tokenizer.
"""

from __future__ import annotations

import importlib
from typing import Any

from router.request import ParsedRequest
from router.scheduling import TokenizeFn


def load_tokenizer(spec: str) -> TokenizeFn:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"tokenizer: expected 'module:name', got {spec!r}")
    if module_name == "hf":  # a Hugging Face tokenizer.json (or a directory with one), loaded locally
        from router.hf_tokenizer import HFTokenizer

        return HFTokenizer(attr)
    if module_name == "enginesim":
        mod = importlib.import_module("enginesim.tokenizer")
        tok = mod.get_tokenizer(attr)
        template = mod.apply_chat_template

        def encode(req: ParsedRequest) -> list[int]:
            if req.is_chat:
                return list(tok.encode(template(req.body["messages"])))
            prompt: Any = req.body.get("prompt")
            return list(tok.encode(prompt if isinstance(prompt, str) else req.prompt_text))

        return encode
    factory = getattr(importlib.import_module(module_name), attr)
    fn: TokenizeFn = factory()
    return fn

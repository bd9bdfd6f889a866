"""A Hugging Face tokenizer for the precise prefix index (`--tokenizer hf:<path>`).

`<path>` is a `tokenizer.json` file or a model directory holding one. The router must compute
the token ids the engine computes, so it applies the same steps vLLM does:

* chat requests: the messages rendered by the model's chat template (`chat_template` of
  `tokenizer_config.json`, a Jinja template rendered in a sandbox with
  `add_generation_prompt=True`, `bos_token`, `eos_token`), then encoded *without* adding
  special tokens (the template writes them);
* completions: the prompt encoded *with* the tokenizer's special tokens (e.g. a BOS).

Without a chat template the engine simulator's (`enginesim.tokenizer.apply_chat_template`)
is used, so an enginesim engine and a router given the same tokenizer agree. The interface
mirrors enginesim's: `encode(text)` and `apply_chat_template(messages)`, and the instance is
the router's `(ParsedRequest) -> list[int]` tokenize function. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from router.request import ParsedRequest


class TokenizerLoadError(ValueError):
    """The tokenizer spec names no usable tokenizer (the message says which file and why)."""


def _token_text(value: Any) -> str:
    if isinstance(value, Mapping):  # {"content": "<s>", "lstrip": false, ...} in older configs
        return str(value.get("content") or "")
    return str(value or "")


def _content_text(content: Any) -> str:
    """Message content as the string templates expect: text parts joined by newlines (as vLLM)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, Sequence):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, Mapping) and p.get("type", "text") == "text" and isinstance(p.get("text"), str))
    return str(content)


class HFTokenizer:
    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        given = Path(path).expanduser()
        directory = given if given.is_dir() else given.parent
        file = given / "tokenizer.json" if given.is_dir() else given
        if not file.is_file():
            raise TokenizerLoadError(f"tokenizer: hf:{path}: no tokenizer file at {file}")
        try:
            self.tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # the Rust loader raises its own exception type
            raise TokenizerLoadError(f"tokenizer: hf:{path}: cannot load {file}: {exc}") from None
        self.name = f"hf:{file}"
        config: dict[str, Any] = {}
        config_file = directory / "tokenizer_config.json"
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text())
            except ValueError as exc:
                raise TokenizerLoadError(f"tokenizer: {config_file}: not valid JSON: {exc}") from None
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the "default" one, as transformers picks
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
            template = named.get("default")
        self._template = self._compile(template, config_file) if isinstance(template, str) else None

    @staticmethod
    def _compile(source: str, where: Path) -> Any:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            return env.from_string(source)
        except TemplateError as exc:
            raise TokenizerLoadError(f"tokenizer: {where}: chat_template does not compile: {exc}") from None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        normalized = [{**m, "content": _content_text(m.get("content"))} for m in messages]
        if self._template is None:
            from enginesim.tokenizer import apply_chat_template

            return apply_chat_template(normalized, add_generation_prompt)
        rendered: str = self._template.render(messages=normalized, add_generation_prompt=add_generation_prompt,
                                              bos_token=self.bos_token, eos_token=self.eos_token)
        return rendered

    def __call__(self, req: ParsedRequest) -> list[int]:
        if req.is_chat:
            return self.encode(self.apply_chat_template(req.body["messages"]), add_special_tokens=False)
        prompt = req.body.get("prompt")
        return self.encode(prompt if isinstance(prompt, str) else req.prompt_text, add_special_tokens=True)

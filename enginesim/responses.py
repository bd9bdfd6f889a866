"""The JSON and SSE bodies of OpenAI (vLLM) and SGLang generation responses.

Per-token chunks are assembled from a pre-encoded head and ``json`` fragments instead of
``json.dumps`` of a whole dict: hundreds of streams produce thousands of chunks a second.
"""

from __future__ import annotations

import json
from typing import Any

from enginesim.engine import EngineRequest, TokenOutput
from enginesim.protocol import GenerationRequest

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class ResponseFormatter:
    """Builds the OpenAI (or SGLang) JSON for one request."""

    def __init__(self, g: GenerationRequest, ereq: EngineRequest, model: str, created: int) -> None:
        self.g = g
        self.ereq = ereq
        self.model = model
        self.created = created
        self.id = ereq.request_id
        self._text = ""
        if g.kind == "chat":
            head = {"id": self.id, "object": "chat.completion.chunk", "created": created, "model": model}
        else:
            head = {"id": self.id, "object": "text_completion", "created": created, "model": model}
        self._head = _dumps(head)[:-1]  # without the closing brace

    def usage(self) -> dict[str, Any]:
        n_prompt = len(self.ereq.prompt_ids)
        n_out = len(self.ereq.output_ids)
        return {"prompt_tokens": n_prompt, "total_tokens": n_prompt + n_out, "completion_tokens": n_out,
                "prompt_tokens_details": {"cached_tokens": self.ereq.num_cached_tokens}}

    @staticmethod
    def _sse(data: str) -> bytes:
        return f"data: {data}\n\n".encode()

    def opening(self) -> list[bytes]:
        if self.g.kind == "chat":
            return [self._sse(self._head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                              '"logprobs":null,"finish_reason":null}]}')]
        if self.g.kind == "completion" and self.g.echo:
            return [self._sse(self._head + ',"choices":[{"index":0,"text":' + _dumps(self._prompt_text())
                              + ',"logprobs":null,"finish_reason":null,"stop_reason":null}]}')]
        return []

    def _prompt_text(self) -> str:
        return self.g.prompt_text if self.g.prompt_text is not None else ""

    def _sglang_meta(self) -> dict[str, Any]:
        e = self.ereq
        reason: dict[str, Any] | None
        if e.finish_reason == "length":
            reason = {"type": "length", "length": len(e.output_ids)}
        elif e.finish_reason == "stop":
            reason = {"type": "stop", "matched": e.stop_reason}
        else:
            reason = None
        return {"id": self.id, "finish_reason": reason, "prompt_tokens": len(e.prompt_ids),
                "completion_tokens": len(e.output_ids), "cached_tokens": e.num_cached_tokens}

    def token_chunk(self, out: TokenOutput, n: int, transfer: dict[str, Any] | None) -> bytes:
        finish = out.finish_reason
        if self.g.kind == "sglang":
            self._text += out.text
            return self._sse(_dumps({"text": self._text, "output_ids": self.ereq.output_ids[:n],
                                     "meta_info": self._sglang_meta()}))
        fr = "null" if finish is None else _dumps(finish)
        stop_reason = _dumps(self.ereq.stop_reason) if finish else "null"
        extra = ""
        if self.g.continuous_usage_stats:
            extra += ',"usage":' + _dumps(self.usage())
        if transfer is not None:
            extra += ',"kv_transfer_params":' + _dumps(transfer)
        if self.g.kind == "chat":
            return self._sse(self._head + ',"choices":[{"index":0,"delta":{"content":' + _dumps(out.text)
                             + '},"logprobs":null,"finish_reason":' + fr + ',"stop_reason":' + stop_reason
                             + "}]" + extra + "}")
        return self._sse(self._head + ',"choices":[{"index":0,"text":' + _dumps(out.text)
                         + ',"logprobs":null,"finish_reason":' + fr + ',"stop_reason":' + stop_reason
                         + "}]" + extra + "}")

    def closing(self) -> list[bytes]:
        chunks: list[bytes] = []
        if self.g.include_usage and self.g.kind != "sglang":
            chunks.append(self._sse(self._head + ',"choices":[],"usage":' + _dumps(self.usage()) + "}"))
        chunks.append(b"data: [DONE]\n\n")
        return chunks

    def full_response(self, transfer: dict[str, Any] | None) -> dict[str, Any]:
        e = self.ereq
        text = e.output_text
        if self.g.kind == "sglang":
            return {"text": text, "output_ids": e.output_ids, "meta_info": self._sglang_meta()}
        if self.g.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": None, "finish_reason": e.finish_reason, "stop_reason": e.stop_reason,
            }
            obj = "chat.completion"
        else:
            if self.g.echo:
                text = self._prompt_text() + text
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": e.finish_reason,
                      "stop_reason": e.stop_reason, "prompt_logprobs": None}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": [choice],
                "usage": self.usage(), "prompt_logprobs": None, "kv_transfer_params": transfer}

"""`--tokenizer hf:<path>`: a real Hugging Face tokenizer (trained here, saved to tmp_path; nothing
is downloaded) gives the precise prefix index the token ids and block keys the engine computes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from enginesim.tokenizer import apply_chat_template as enginesim_template
from router.hf_tokenizer import TokenizerLoadError
from router.kvindex.events import BlockStored
from router.kvindex.precise import KVEventIndex
from router.request import parse_request
from router.scheduling import SchedulingContext, Signals
from router.tokenize import load_tokenizer

SPECIALS = ["[UNK]", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["you are a careful assistant", "system user assistant", "what is the capital of france",
          "tell me a story about a cat", "the cat sat on the mat", "paris is the capital"]
SYSTEM = "you are a careful assistant"
BLOCK = 4


def train(directory: Path, template: str | None = CHATML) -> Path:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if template is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(
            {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": template}))
    return directory


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return train(tmp_path / "model")


def ids(directory: Path, *tokens: str) -> list[int]:
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    out = []
    for t in tokens:
        token_id = tok.token_to_id(t)
        assert token_id is not None, t
        out.append(token_id)
    return out


def chat(*messages: tuple[str, Any]) -> Any:
    body = {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]}
    return parse_request("/v1/chat/completions", orjson.dumps(body))


def test_chat_request_is_templated_then_encoded_without_a_bos(model_dir: Path) -> None:
    tokenize = load_tokenizer(f"hf:{model_dir}")
    assert tokenize(chat(("system", SYSTEM), ("user", "tell me a story"))) == ids(
        model_dir, "<|im_start|>", "system", "you", "are", "a", "careful", "assistant", "<|im_end|>",
        "<|im_start|>", "user", "tell", "me", "a", "story", "<|im_end|>", "<|im_start|>", "assistant")


def test_completion_prompt_gets_the_tokenizers_special_tokens(model_dir: Path) -> None:
    tokenize = load_tokenizer(f"hf:{model_dir}")
    request = parse_request("/v1/completions", orjson.dumps({"model": "m", "prompt": "the cat sat"}))
    assert tokenize(request) == ids(model_dir, "<s>", "the", "cat", "sat")


def test_content_parts_tokenize_like_the_same_text(model_dir: Path) -> None:
    tokenize = load_tokenizer(f"hf:{model_dir}")
    parts = [{"type": "text", "text": "tell me"}, {"type": "text", "text": "a story"}]
    assert tokenize(chat(("user", parts))) == tokenize(chat(("user", "tell me\na story")))


def test_a_tokenizer_file_without_a_chat_template_uses_the_engine_simulators(tmp_path: Path) -> None:
    directory = train(tmp_path / "plain", template=None)
    tokenize = load_tokenizer(f"hf:{directory / 'tokenizer.json'}")
    messages = [{"role": "user", "content": "what is the capital of france"}]
    engine = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert tokenize(chat(("user", messages[0]["content"]))) == engine.encode(
        enginesim_template(messages), add_special_tokens=False).ids


def test_request_block_keys_match_the_blocks_an_engine_reports(model_dir: Path) -> None:
    tokenize = load_tokenizer(f"hf:{model_dir}")
    request = chat(("system", SYSTEM), ("user", "what is the capital of france"))
    engine_ids = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(
        tokenize.apply_chat_template(request.body["messages"]), add_special_tokens=False).ids  # type: ignore[attr-defined]
    index = KVEventIndex()
    full = len(engine_ids) // BLOCK
    index.apply("pod-a", BlockStored(block_hashes=tuple(range(100, 100 + full)), parent_block_hash=None,
                                     token_ids=tuple(engine_ids[:full * BLOCK]), block_size=BLOCK))
    ctx = SchedulingContext(request=request, model="m", lora=None, signals=Signals(precise=index, tokenize=tokenize))
    assert (len(ctx.precise_keys), ctx.precise_match) == (full, {"pod-a": full})


def test_conversations_sharing_a_system_prompt_share_their_leading_block_keys(model_dir: Path) -> None:
    tokenize = load_tokenizer(f"hf:{model_dir}")
    index = KVEventIndex(block_size=BLOCK)
    a = index.request_keys(tokenize(chat(("system", SYSTEM), ("user", "tell me a story about a cat"))))
    b = index.request_keys(tokenize(chat(("system", SYSTEM), ("user", "what is the capital of france"))))
    shared = 2  # "<|im_start|> system you are" "a careful assistant <|im_end|>" are whole blocks of both
    assert a[:shared] == b[:shared] and a[shared] != b[shared]


def test_a_missing_tokenizer_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer file at .*tokenizer\.json"):
        load_tokenizer(f"hf:{tmp_path}")


def test_a_chat_template_that_does_not_compile_is_an_error_naming_the_config(tmp_path: Path) -> None:
    directory = train(tmp_path / "broken", template="{% for m in messages %}")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer_config\.json: chat_template does not compile"):
        load_tokenizer(f"hf:{directory}")

"""The pure tokenizer and block-hash modules the router imports."""

import subprocess
import sys

import pytest

from enginesim.blocks import extra_key, hash_block, hash_blocks, none_hash
from enginesim.tokenizer import VOCAB, apply_chat_template, get_tokenizer


def test_whitespace_tokenizer_round_trips_generated_ids() -> None:
    tok = get_tokenizer("whitespace")
    ids = [0, 5, len(VOCAB) - 1, len(VOCAB) + 17]
    assert tok.encode(tok.decode(ids)) == ids


def test_whitespace_tokenizer_prompt_plus_generated_text_is_prompt_ids_plus_generated_ids() -> None:
    tok = get_tokenizer("whitespace")
    prompt = "Tell me about volcanoes"
    generated = [3, 99, 1000]
    assert tok.encode(prompt + tok.decode(generated)) == tok.encode(prompt) + generated


def test_unknown_words_map_to_stable_ids() -> None:
    tok = get_tokenizer("whitespace")
    assert tok.encode("caldera volcano") == tok.encode("caldera   volcano")
    assert tok.encode("caldera")[0] >= len(VOCAB)


def test_bytes_tokenizer_is_utf8() -> None:
    tok = get_tokenizer("bytes")
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.decode(tok.encode("hé")) == "hé"


def test_unknown_tokenizer_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        get_tokenizer("sentencepiece")


def test_chat_template_renders_roles_and_generation_prompt() -> None:
    text = apply_chat_template([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert text == "<|system|> be brief\n<|user|> hi\n<|assistant|>"


def test_chat_template_accepts_text_parts() -> None:
    text = apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "a b"}]}], False)
    assert text == "<|user|> a b"


def test_hash_blocks_ignores_trailing_partial_block() -> None:
    assert len(hash_blocks(list(range(40)), 16)) == 2


def test_hash_blocks_are_chained() -> None:
    hashes = hash_blocks(list(range(32)), 16)
    assert hashes[0] == hash_block(None, list(range(16)))
    assert hashes[1] == hash_block(hashes[0], list(range(16, 32)))


def test_shared_prefix_gives_shared_leading_hashes() -> None:
    a = hash_blocks([1] * 16 + [2] * 16, 16)
    b = hash_blocks([1] * 16 + [3] * 16, 16)
    assert a[0] == b[0]
    assert a[1] != b[1]


def test_lora_name_changes_every_block_hash() -> None:
    base = hash_blocks(list(range(32)), 16)
    lora = hash_blocks(list(range(32)), 16, lora_name="sql")
    assert all(x != y for x, y in zip(base, lora, strict=True))


def test_cache_salt_keys_only_the_first_block() -> None:
    assert extra_key(cache_salt="s", first_block=True) == "salt=s"
    assert extra_key(cache_salt="s", first_block=False) == ""


def test_seed_changes_the_root_hash() -> None:
    assert none_hash(0) != none_hash(1)


def test_hashes_are_identical_in_another_process() -> None:
    code = "from enginesim.blocks import hash_blocks; print(hash_blocks(list(range(64)), 16, 'x'))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == str(hash_blocks(list(range(64)), 16, "x"))

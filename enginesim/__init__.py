"""enginesim: a vLLM- and SGLang-compatible engine simulator (see enginesim/README.md).

Router-facing pure modules: :mod:`enginesim.tokenizer` (token ids and chat template)
and :mod:`enginesim.blocks` (chained block hashes as published in KV events).
"""

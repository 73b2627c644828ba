"""A tiny random Llama with a locally trained byte-level BPE tokenizer and a ChatML template, for fast tests.

Built entirely from config (no download): ``build_tiny_model(dir)`` writes an HF folder that every loader in the
platform (transformers, peft, vLLM) treats like a real base model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# Same shape as SmolLM2's template, minus the default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_WORDS = (
    "the a an of to and in is it that for on with as was at by be this are from or have not but what all were when "
    "we there can your which their said if do will each about how up out them then she many some so these would "
    "other into has more her two like him see time could no make than first been its who now people my made over "
    "did down only way find use may water long little very after words called just where most know question answer "
    "how many apples does she have left total number each day week dollars costs buys sells half twice more less "
    "human assistant user system please help thank you sorry cannot i am here to explain step by step therefore "
    "0 1 2 3 4 5 6 7 8 9 10 12 15 20 24 30 48 100 + - * / = #### ? ! . , : ;"
).split()


def _training_corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(_WORDS), (n_lines, 12), generator=gen)
    return [" ".join(_WORDS[i] for i in row.tolist()) for row in idx]


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes, no UNK) with ChatML specials and chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_llama_config(vocab_size: int, **overrides: int) -> LlamaConfig:
    """A ~0.1M-parameter Llama: 2 layers, hidden 64, GQA 4/2 heads, tied embeddings."""
    cfg = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def build_tiny_model(out_dir: str | Path, seed: int = 0, **config_overrides: int) -> Path:
    """Write a tiny random Llama + tokenizer to ``out_dir`` (an HF folder) and return the path. Deterministic in seed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    config = tiny_llama_config(
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config_overrides,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "rayalign_source.json").write_text(json.dumps({"source": "tiny:llama", "seed": seed}), encoding="utf-8")
    return out

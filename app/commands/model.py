"""`rayalign model prepare|chat`: materialize a base model (GGUF → HF folder), print its SHA, or chat with it."""

from __future__ import annotations

import argparse
import time

from app.models.loader import load_model, load_tokenizer, resolve_model

HELP = "prepare a base model (convert/cache, print its weights SHA) or send it one chat prompt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["prepare", "chat"])
    p.add_argument("--source", default="bundled:smollm2-135m-instruct", help="model source (see ModelSpec.source)")
    p.add_argument("--prompt", default="What is the capital of France? Answer in one sentence.")
    p.add_argument("--max-new-tokens", type=int, default=48)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    resolved = resolve_model(args.source)
    print(f"model: {resolved.source} -> {resolved.path}")
    print(f"base_sha: {resolved.base_sha}  ({time.perf_counter() - t0:.1f}s)")
    if args.action == "chat":
        import torch

        tok = load_tokenizer(resolved)
        model = load_model(resolved)
        ids = tok.apply_chat_template(
            [{"role": "user", "content": args.prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=args.max_new_tokens, do_sample=False)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        print(f"user: {args.prompt}\nassistant: {reply.strip()}")
    return 0

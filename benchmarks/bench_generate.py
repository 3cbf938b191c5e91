"""Greedy generation speed: npgpt (KV cache) vs the seed's PyTorch loop vs transformers.

    python benchmarks/bench_generate.py [--new-tokens 200] [--repeats 5]

The seed-size model: V=65, d_model 128, 4 heads, 4 layers, context 256, batch 1, with
``npgpt.generate`` (KV cache) in two forms, each against the reference that computes the
same thing: the seed's GPTModel (residual "seed", exact GELU) against the seed's own PyTorch
loop, which re-runs the whole sequence every step as the tutorial does; and the GPT-2 form
(pre-norm, tanh GELU, tied embeddings) against ``GPT2LMHeadModel.generate`` holding the
same weights (its own KV cache) — the generated tokens are checked equal first. Prints
tokens/s (median of the repeats) and npgpt's speed-up over each.

A second table goes past the context: ``--past-tokens`` (1,000) new tokens from the bundled
model (``npgpt.load("shakespeare-char")``, context 128) with ``context_overflow="exact"`` (the
last 128 tokens, recomputed each step) and ``"chunk"`` (restart from the newest half, then the
KV cache), against the seed's loop cropping to the window, the same weights in its GPTModel.
For one thread on each side:

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_generate.py
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4)


def npgpt_greedy(model, prompt, new_tokens, overflow="exact"):
    """Greedy decoding with npgpt.generate (KV cache: the prompt once, then one token per step)."""
    return npgpt.generate(model, prompt, max_new_tokens=new_tokens,
                          context_overflow=overflow).sequences[0].tolist()


def seed_loop(seed, prompt, new_tokens, context_length):
    """The seed tutorial's generation loop: the whole sequence (cropped to the last
    ``context_length`` tokens) through the model each step, softmax, argmax."""
    import torch

    ids = torch.from_numpy(prompt)[None, :]
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = seed(ids[:, -context_length:])[:, -1, :]
            nxt = torch.argmax(torch.softmax(logits, dim=-1), dim=-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--past-tokens", type=int, default=1000,
                        help="new tokens past the context from the bundled model (0: skip)")
    args = parser.parse_args(argv)
    n = args.new_tokens

    seed_cfg = npgpt.GPTConfig(**SHAPE, residual="seed", gelu="exact")
    seed_np = npgpt.GPT(seed_cfg, seed=0)
    gpt2_cfg = npgpt.GPTConfig(**SHAPE, residual="pre_norm", gelu="tanh", tie_embeddings=True,
                               output_bias=False)
    gpt2_np = npgpt.GPT(gpt2_cfg, seed=0, init="torch")
    gpt2_np.params["token_embedding.weight"] *= np.float32(0.3)   # not too peaked
    prompt = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], args.prompt_tokens)
    runs = {"npgpt, the seed's model": lambda: npgpt_greedy(seed_np, prompt, n),
            "npgpt, GPT-2 form": lambda: npgpt_greedy(gpt2_np, prompt, n)}

    if has("torch"):
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from torch_reference import seed_model, state_dict_numpy

        seed = seed_model(seed_cfg)
        seed_np.load_state_dict(state_dict_numpy(seed))

        runs["the seed's PyTorch loop"] = lambda: seed_loop(seed, prompt, n, SHAPE["context_length"])
        first = seed_loop(seed, prompt, 20, SHAPE["context_length"]).numpy()[0].tolist()
        same = npgpt_greedy(seed_np, prompt, 20) == first
        print(f"npgpt and the seed's loop agree on the first 20 greedy tokens: {same}")

    if has("transformers") and has("torch"):
        import torch
        sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
        from make_decoding_fixtures import to_hf_gpt2

        hf = to_hf_gpt2(gpt2_np)                 # the same weights as "npgpt, GPT-2 form"
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = 0
        hf_ids = torch.from_numpy(prompt)[None, :]

        def hf_generate():
            with torch.no_grad():
                return hf.generate(hf_ids, attention_mask=torch.ones_like(hf_ids), max_new_tokens=n,
                                   min_new_tokens=n, do_sample=False)

        runs["transformers generate"] = hf_generate
        same = npgpt_greedy(gpt2_np, prompt, n) == hf_generate().numpy()[0].tolist()
        print(f"npgpt (GPT-2 form) and transformers generate the same {n} tokens: {same}")

    print(thread_note())
    times = interleaved_medians(runs, repeats=args.repeats)
    pairs = {"the seed's PyTorch loop": "npgpt, the seed's model",
             "transformers generate": "npgpt, GPT-2 form"}
    rows = []
    for name, t in times.items():
        ours = pairs.get(name)
        ratio = f"{t / times[ours]:.1f}x (vs {ours})" if ours else ""
        rows.append([name, f"{n / t:,.0f}", f"{t * 1000:,.1f}", ratio])
    print(f"greedy, batch 1, {args.prompt_tokens}-token prompt, {n} new tokens, "
          f"median of {args.repeats}:")
    print_table(rows, ["implementation", "tokens/s", "ms per run", "npgpt speed-up"])
    if args.past_tokens:
        times.update(past_the_context(args.past_tokens, args.repeats))
    return times


def past_the_context(n, repeats):
    """The bundled model, n new tokens past its context: npgpt's two context_overflow modes
    against the seed's loop cropping to the window (tokens checked equal in the exact mode)."""
    model = npgpt.load("shakespeare-char")
    prompt = np.array(model.tokenizer.encode("ROMEO:"))
    C = model.config.context_length
    runs = {"npgpt, exact": lambda: npgpt_greedy(model, prompt, n),
            "npgpt, chunk": lambda: npgpt_greedy(model, prompt, n, "chunk")}
    if has("torch"):
        sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
        from make_context_overflow_fixtures import torch_twin

        seed = torch_twin(model)
        runs["the seed's PyTorch loop (cropped)"] = lambda: seed_loop(seed, prompt, n, C)
        same = runs["npgpt, exact"]() == runs["the seed's PyTorch loop (cropped)"]().numpy()[0].tolist()
        print(f"\nnpgpt (exact) and the seed's cropping loop generate the same {n} tokens: {same}")
    print(thread_note())
    times = interleaved_medians(runs, repeats=repeats, pause=0.5)
    reference = times.get("the seed's PyTorch loop (cropped)")
    rows = [[name, f"{n / t:,.0f}", f"{t * 1000:,.0f}", f"{reference / t:.2f}x" if reference else ""]
            for name, t in times.items()]
    print(f"greedy past the context: the bundled model (context {C}), a {len(prompt)}-token "
          f"prompt, {n} new tokens, median of {repeats}:")
    print_table(rows, ["implementation", "tokens/s", "ms per run", "vs the seed's loop"])
    return times


if __name__ == "__main__":
    main()

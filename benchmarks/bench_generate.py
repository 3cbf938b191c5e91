"""Greedy generation speed: npgpt (KV cache) vs the seed's PyTorch loop vs transformers.

    python benchmarks/bench_generate.py [--new-tokens 200] [--repeats 5]

The seed-size model: V=65, d_model 128, 4 heads, 4 layers, context 256, batch 1. npgpt
runs the seed's GPTModel weights (residual "seed", exact GELU) with ``npgpt.generate``
(KV cache); the seed's loop re-runs the whole sequence every step, as the tutorial does;
transformers runs ``GPT2LMHeadModel.generate`` on a GPT-2 of the same shape (its own KV
cache). Prints tokens/s (median of the repeats) and npgpt's speed-up over each.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4)


def npgpt_greedy(model, prompt, new_tokens):
    """Greedy decoding with npgpt.generate (KV cache: the prompt once, then one token per step)."""
    return npgpt.generate(model, prompt, max_new_tokens=new_tokens).sequences[0].tolist()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.new_tokens

    cfg = npgpt.GPTConfig(**SHAPE, residual="seed", gelu="exact")
    model = npgpt.GPT(cfg, seed=0)
    prompt = np.random.default_rng(0).integers(0, cfg.vocab_size, args.prompt_tokens)
    runs = {"npgpt (KV cache)": lambda: npgpt_greedy(model, prompt, n)}

    if has("torch"):
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
        from torch_reference import seed_model, state_dict_numpy

        seed = seed_model(cfg)
        model.load_state_dict(state_dict_numpy(seed))

        def seed_loop():
            ids = torch.from_numpy(prompt)[None, :]
            with torch.no_grad():
                for _ in range(n):
                    logits = seed(ids)[:, -1, :]
                    nxt = torch.argmax(torch.softmax(logits, dim=-1), dim=-1, keepdim=True)
                    ids = torch.cat([ids, nxt], dim=1)
            return ids

        runs["seed PyTorch loop"] = seed_loop
        # same tokens from both (sanity check that we time the same computation)
        same = np.array_equal(np.array(npgpt_greedy(model, prompt, 20)), seed_loop().numpy()[0][:len(prompt) + 20])
        print(f"npgpt and the seed's loop agree on the first 20 greedy tokens: {same}")

    if has("transformers") and has("torch"):
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config(vocab_size=65, n_positions=256, n_embd=128, n_layer=4,
                                        n_head=4, bos_token_id=0, eos_token_id=0)).eval()
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = 0
        hf_ids = torch.from_numpy(prompt)[None, :]

        def hf_generate():
            with torch.no_grad():
                return hf.generate(hf_ids, attention_mask=torch.ones_like(hf_ids), max_new_tokens=n,
                                   min_new_tokens=n, do_sample=False)

        runs["transformers generate"] = hf_generate

    print(thread_note())
    times = interleaved_medians(runs, repeats=args.repeats)
    base = times["npgpt (KV cache)"]
    rows = [[name, f"{n / t:,.0f}", f"{t * 1000:,.1f}", f"{t / base:.1f}x"] for name, t in times.items()]
    print(f"greedy, batch 1, {args.prompt_tokens}-token prompt, {n} new tokens, "
          f"median of {args.repeats}:")
    print_table(rows, ["implementation", "tokens/s", "ms per run", "npgpt speed-up"])
    return times


if __name__ == "__main__":
    main()

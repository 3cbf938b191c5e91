"""The training loop: one step (loss and gradients, clipping, the learning rate, AdamW), the
batch cut into parts run side by side, evaluation, and :func:`train`, which runs the steps,
evaluates, saves, and stops cleanly when interrupted.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from typing import Callable

import numpy as np

from .. import threads
from .._threads import together
from ..config import GPTConfig  # noqa: F401  (the examples make models)
from ..model import GPT  # noqa: F401
from .checkpoint import require_finite, save_checkpoint
from .config import TrainConfig  # noqa: F401
from .data import estimate_loss, get_batch
from .errors import TrainingError, TrainingInterrupted
from .optim import clip_grad_norm, learning_rate
from .runs import FolderLock, StopRequest, check_out_dir, remove_stale_temporaries
from .state import TrainState


def _diverged(step: int, loss: float, norm: float, lr: float) -> str:
    return (f"training diverged at step {step}: the loss is {loss:.4g} and the gradient norm "
            f"{norm:.4g}; try a lower learning rate than {lr:g} (--lr); the diverged state is not "
            f"saved (an earlier checkpoint is kept)")


#: a training step's batch is cut into this many parts, each part's forward and backward
#: pass run in its own thread, when the step is large enough and dropout off (see below)
BATCH_PARTS = 2


def batch_loss_and_grads(model, x, y, rng=None, flops=None):
    """``model.loss_and_grads(x, y, rng)``, the batch cut into ``BATCH_PARTS`` parts whose
    passes run side by side in npgpt's threads.

    The loss is a mean over the batch's positions, so with parts of n_i of N positions,
    loss = Σ (n_i/N) loss_i and every gradient = Σ (n_i/N) grad_i: the same numbers up to
    float rounding. A baby-GPT step is hundreds of small NumPy operations; two threads
    splitting each of them (BLAS, row-split steps) wait on each other at every one -- and
    OpenBLAS's waiting thread spins, burning CPU time --, while two halves of the batch meet
    once (``benchmarks/bench_busy.py`` times it).

    The cut depends only on the work (at least 2 rows, ``flops`` >= ``threads.MIN_FLOPS``,
    no dropout, which draws from one generator in order), never on the machine's load: one
    thread runs the same parts one after the other, so a run's numbers do not depend on the
    threads it got (a resumed run stays bit-identical). Each part's matrix products keep to
    its own core (``threads.blas_threads``).

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=8, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> x = np.arange(32).reshape(4, 8) % 8
    >>> whole, parts = model.loss_and_grads(x, (x + 1) % 8), batch_loss_and_grads(model, x, (x + 1) % 8, flops=1e12)
    >>> bool(abs(whole[0] - parts[0]) < 1e-6)
    True
    """
    x, y = np.asarray(x), np.asarray(y)
    flops = 3 * x.size * model.num_parameters() if flops is None else flops
    parts = min(BATCH_PARTS, len(x)) if x.ndim == 2 else 1
    if parts < 2 or flops < threads.MIN_FLOPS or (rng is not None and model.config.dropout > 0):
        return model.loss_and_grads(x, y, rng=rng)
    bounds = [len(x) * i // parts for i in range(parts + 1)]
    calls = [lambda lo=lo, hi=hi: model.loss_and_grads(x[lo:hi], y[lo:hi], rng=rng)
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    with threads.blas_threads(max(1, threads.get_num_threads() // parts)):
        results = together(calls)
    weights = [(hi - lo) / len(x) for lo, hi in zip(bounds[:-1], bounds[1:])]
    loss = sum(w * part_loss for w, (part_loss, _) in zip(weights, results))
    grads = results[0][1]
    for name, g in grads.items():                              # Σ (n_i/N) grad_i, in place
        g *= g.dtype.type(weights[0])
        for w, (_, part_grads) in zip(weights[1:], results[1:]):
            g += g.dtype.type(w) * part_grads[name]
    return float(loss), grads


def train_step(state: TrainState, x, y) -> dict:
    """One optimiser step on the batch (x, y): forward, backward, clip, AdamW.

    Returns {"step": steps done, "loss": the batch's loss before the step, "lr": the
    learning rate used, "grad_norm": the gradient norm before clipping}. A loss or gradient
    norm that is not finite raises :class:`TrainingError` before AdamW changes anything.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(warmup=100, lr=1e-3))
    >>> x, y = get_batch(np.array([0, 1, 2, 3] * 10), 4, 8, state.rng)
    >>> info = train_step(state, x, y)
    >>> info["step"], round(info["lr"], 7), state.step       # lr: warm-up step 0 of 100
    (1, 9.9e-06, 1)
    """
    tc = state.train_config
    lr = learning_rate(state.step, tc)
    flops = 3 * np.size(x) * state.model.num_parameters()              # forward + backward: ~3x
    threads.for_work(flops)
    loss, grads = batch_loss_and_grads(state.model, x, y, state.rng, flops)
    norm = clip_grad_norm(grads, tc.grad_clip)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingError(_diverged(state.step + 1, loss, norm, tc.lr))
    state.optimizer.step(state.model.params, grads, lr)
    state.step += 1
    return {"step": state.step, "loss": loss, "lr": lr, "grad_norm": norm}


def train(state: TrainState, train_data, val_data, out_dir: str | None = None,
          on_step: Callable[[dict], None] | None = None,
          on_eval: Callable[[dict], None] | None = None,
          stop_at: int | None = None, overwrite: bool = False) -> TrainState:
    """Run the loop from ``state.step`` to ``train_config.steps`` (or ``stop_at``).

    Every ``eval_interval`` steps (and at the end) the loss is estimated on both splits; a
    better validation loss writes ``out_dir/model.safetensors`` (loadable with
    ``npgpt.load``), and ``out_dir/ckpt.npz`` always holds the latest full state.

    A run never replaces another one. ``out_dir`` may be absent, empty, or hold other files
    (they are never touched: a run writes only :data:`RUN_FILES` and its lock). When it
    holds ``ckpt.npz`` or ``model.safetensors`` (:func:`run_in_folder`), ``train`` goes on
    only if ``state`` continues that run: the same run (``state.run_id``, as
    :func:`load_checkpoint` of its ``ckpt.npz`` gives) at the folder's step or later.
    Anything else — a new state, another run's, an older state of the same run, a
    ``model.safetensors`` without a checkpoint, a ``ckpt.npz`` that cannot be read — raises
    a :class:`TrainingError` naming ``out_dir`` and ``overwrite``, before anything is
    written. ``overwrite=True`` lets the run replace the folder's ``ckpt.npz`` and
    ``model.safetensors`` as it saves (until its first save they stay as they were);
    other files are kept.

    Interrupted runs lose nothing and resume bit-identically (with :func:`load_checkpoint`):

    - Ctrl-C (SIGINT, in the main thread) only asks the loop to stop: it stops at the next
      step boundary, saves that state and raises :class:`TrainingInterrupted` (a
      KeyboardInterrupt). A second Ctrl-C stops at once; every save is atomic.
    - A KeyboardInterrupt raised by code (``on_step``, ``on_eval``, or outside the main
      thread) rewinds the state to the last step boundary, saves it and raises
      :class:`TrainingInterrupted`; one that lands inside an AdamW update, where the
      parameters are half-updated, saves nothing (the last checkpoint is kept).
    - A run stopped between a step and its evaluation evaluates first when resumed.
    - While no evaluation has written ``model.safetensors`` (a run interrupted before its
      first), the saves on the way out write it too: the latest state, not yet evaluated.

    A loss or gradient norm that is not finite stops the run with a :class:`TrainingError`
    and saves nothing (the last checkpoint, finite, is kept). While it runs, ``train`` holds
    ``out_dir/.lock``: a second run on the same folder gets a :class:`TrainingError`; the
    temporaries of saves killed midway are removed.

    ``on_step(info)`` gets :func:`train_step`'s dict plus "seconds" and
    "tokens_per_second"; ``on_eval(record)`` gets :func:`evaluate`'s.

    Examples
    --------
    A corpus that repeats 0 1 2 3 is learnt in a few dozen steps (from log 4 ≈ 1.39):

    >>> data = np.array([0, 1, 2, 3] * 50)
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> tc = TrainConfig(batch_size=4, steps=60, lr=1e-2, min_lr=1e-3, warmup=5,
    ...                  eval_interval=20, eval_iters=2)
    >>> state = train(TrainState.new(model, tc), data[:160], data[160:], out_dir="run")
    >>> [r["step"] for r in state.history], state.best_val < 0.05
    ([20, 40, 60], True)
    >>> sorted(os.listdir("run"))
    ['ckpt.npz', 'model.safetensors']
    """
    tc = state.train_config
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    if out_dir is None:
        return _run(state, train_data, val_data, None, on_step, on_eval, end)
    with FolderLock(out_dir):
        check_out_dir(state, out_dir, overwrite)
        if state.run_id is None:                  # from now on its checkpoints name the run
            state.run_id = secrets.token_hex(8)
        remove_stale_temporaries(out_dir)
        return _run(state, train_data, val_data, out_dir, on_step, on_eval, end)


def _run(state: TrainState, train_data, val_data, out_dir, on_step, on_eval, end: int) -> TrainState:
    """train()'s loop: Ctrl-C waits for a step boundary, other interrupts are rewound to one."""
    tc = state.train_config
    context = state.model.config.context_length
    tokens_per_step = tc.batch_size * context
    boundary = _Boundary()
    with StopRequest() as stop:
        try:
            boundary.take(state)
            if _evaluation_pending(state):
                evaluate(state, train_data, val_data, out_dir, on_eval)
            while state.step < end and not stop.requested:
                boundary.take(state)
                start = time.perf_counter()
                x, y = get_batch(train_data, tc.batch_size, context, state.rng)
                info = train_step(state, x, y)
                info["seconds"] = time.perf_counter() - start
                info["tokens_per_second"] = tokens_per_step / info["seconds"]
                if on_step is not None:
                    on_step(info)
                if _evaluation_pending(state) and not stop.requested:
                    evaluate(state, train_data, val_data, out_dir, on_eval)
        except KeyboardInterrupt as err:
            step = state.step if boundary.rewind(state) else None
            raise TrainingInterrupted(step, () if step is None else _save_state(state, out_dir)) from err
        saved = _save_state(state, out_dir)
    if stop.requested:
        raise TrainingInterrupted(state.step, saved)
    return state


def _evaluation_pending(state: TrainState) -> bool:
    """Whether ``state.step`` is an evaluation step whose evaluation is not in the history
    (just stepped there, or resumed from a run interrupted before it evaluated)."""
    tc = state.train_config
    due = state.step % tc.eval_interval == 0 or state.step == tc.steps
    return state.step > 0 and due and not (state.history and state.history[-1]["step"] == state.step)


def _save_state(state: TrainState, out_dir) -> tuple:
    """Write ``out_dir/ckpt.npz``; while no evaluation has saved a model, write
    ``out_dir/model.safetensors`` too (the latest state, not yet evaluated). The paths."""
    if out_dir is None:
        return ()
    checkpoint = os.path.join(out_dir, "ckpt.npz")
    written = [checkpoint]
    if state.best_val is None:
        require_finite(state)
        written.append(os.path.join(out_dir, "model.safetensors"))
        state.model.save(written[-1])
    save_checkpoint(checkpoint, state)
    return tuple(written)


class _Boundary:
    """What a step changes, as it was when the step began: enough to rewind a step that an
    exception cut short, without copying any array."""

    def take(self, state: TrainState) -> None:
        self.step, self.t = state.step, state.optimizer.t
        self.rng = state.rng.bit_generator.state
        self.history, self.best_val = len(state.history), state.best_val

    def rewind(self, state: TrainState) -> bool:
        """Back to a step boundary: True, or False when AdamW had begun the update (then the
        parameters are half-updated and nothing can be saved)."""
        del state.history[self.history:]          # an evaluation cut short is redone on resume
        state.best_val = self.best_val
        if state.step == self.step + 1:           # the step was done: its end is a boundary
            return True
        if state.step == self.step and state.optimizer.t == self.t:
            state.rng.bit_generator.state = self.rng      # undo the draws of batch and dropout
            return True
        return False


def evaluate(state: TrainState, train_data, val_data, out_dir=None, on_eval=None) -> dict:
    """Estimate train and validation loss; keep the best model and write checkpoints.

    Returns (and appends to ``state.history``) {"step", "train_loss", "val_loss", "best":
    whether the validation loss is the lowest yet}. A loss that is not finite (a diverged
    model) raises :class:`TrainingError` and changes nothing: it is never recorded as best.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(batch_size=4, eval_iters=2))
    >>> data = np.array([0, 1, 2, 3] * 10)
    >>> record = evaluate(state, data[:30], data[30:])
    >>> record["step"], round(record["val_loss"], 2), record["best"], state.best_val == record["val_loss"]
    (0, 1.38, True, True)
    """
    tc = state.train_config
    context = state.model.config.context_length
    seed = [tc.seed, state.step]        # its own stream: evaluation never shifts training's
    record = {"step": state.step,
              "train_loss": estimate_loss(state.model, train_data, tc.batch_size, context, tc.eval_iters, seed),
              "val_loss": estimate_loss(state.model, val_data, tc.batch_size, context, tc.eval_iters, seed)}
    if not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])):
        raise TrainingError(f"at step {state.step} the estimated loss is not finite (train "
                            f"{record['train_loss']:.4g}, validation {record['val_loss']:.4g}): the "
                            f"run diverged; nothing is recorded or saved")
    if out_dir is not None:
        require_finite(state)
    improved = state.best_val is None or record["val_loss"] < state.best_val
    if improved:
        state.best_val = record["val_loss"]
    record["best"] = improved
    state.history.append(record)
    if out_dir is not None:
        if improved:
            state.model.save(os.path.join(out_dir, "model.safetensors"))
        save_checkpoint(os.path.join(out_dir, "ckpt.npz"), state)
    if on_eval is not None:
        on_eval(record)
    return record

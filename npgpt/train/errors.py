"""The two ways a training run ends early: :class:`TrainingError` (it cannot go on; one line
says why) and :class:`TrainingInterrupted` (Ctrl-C; says what it saved)."""

from __future__ import annotations


class TrainingError(ValueError):
    """A training run cannot go on: one line that says why (the command line prints it and
    exits with 2). Raised when the loss diverges, when another run holds the output folder,
    and when a state that is not finite would be saved.

    Examples
    --------
    >>> from npgpt import GPT, GPTConfig
    >>> from npgpt.train import TrainConfig, TrainState, get_batch, train_step
    >>> model = GPT(GPTConfig(vocab_size=4, context_length=8, d_model=16, num_heads=2, num_layers=1), seed=0)
    >>> state = TrainState.new(model, TrainConfig(lr=1e10, min_lr=0.0, warmup=0))
    >>> x, y = get_batch(np.array([0, 1, 2, 3] * 10), 4, 8, state.rng)
    >>> with np.errstate(all="ignore"):          # doctest: +ELLIPSIS
    ...     for _ in range(10):
    ...         _ = train_step(state, x, y)
    Traceback (most recent call last):
        ...
    npgpt.train.errors.TrainingError: training diverged at step 2: the loss is nan ... (--lr); ...
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a KeyboardInterrupt) stopped :func:`train`; says what it left behind.

    Attributes
    ----------
    step : int or None
        The step of the consistent state that ``state`` holds and that was saved; None when
        a KeyboardInterrupt came in the middle of an AdamW update (then nothing is saved and
        the files of the last save are kept).
    saved : tuple of str
        The files written on the way out (none without ``out_dir``).

    Examples
    --------
    >>> err = TrainingInterrupted(10, ("out/ckpt.npz",))
    >>> isinstance(err, KeyboardInterrupt), err.step, str(err)
    (True, 10, 'training interrupted at step 10; saved out/ckpt.npz')
    """

    def __init__(self, step: int | None, saved=()):
        self.step = step
        self.saved = tuple(saved)
        if step is None:
            text = "training interrupted in the middle of an AdamW update: that state was not saved"
        else:
            text = f"training interrupted at step {step}" + ("; saved " + ", ".join(self.saved)
                                                              if self.saved else "")
        super().__init__(text)

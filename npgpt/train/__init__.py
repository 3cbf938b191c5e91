"""Training: AdamW, the learning-rate schedule, gradient clipping, batches, evaluation and
checkpoints that resume bit-identically.

Shapes: a corpus is a 1-D int array of token ids; a batch is x, y (B, T) with y the
sequence x shifted by one token (y[b, t] = corpus[i_b + t + 1]).

One concept a module, each importing only those above it in this list:

* ``config.py``      :class:`TrainConfig`, a run's settings
* ``errors.py``      :class:`TrainingError`, :class:`TrainingInterrupted`
* ``optim.py``       the math of an update: :func:`learning_rate`, :func:`clip_grad_norm`,
  :func:`decayed_parameters`, :class:`AdamW`
* ``data.py``        :func:`split_corpus`, :func:`get_batch`, :func:`estimate_loss`, :func:`split_loss`
* ``sizes.py``       :func:`num_parameters`, :func:`training_memory`, :func:`model_config`,
  :func:`matched_ffn_dim`, :func:`architecture`
* ``state.py``       :class:`TrainState`, where a run is
* ``checkpoint.py``  :func:`save_checkpoint`, :func:`load_checkpoint`
* ``runs.py``        a run's output folder (:func:`run_in_folder`), its lock, Ctrl-C's stop request
* ``loop.py``        :func:`train_step`, :func:`batch_loss_and_grads`, :func:`evaluate`, :func:`train`

Every name is importable from ``npgpt.train`` as before the package was split.
"""

from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import estimate_loss, get_batch, split_corpus, split_loss
from .errors import TrainingError, TrainingInterrupted
from .loop import BATCH_PARTS, batch_loss_and_grads, evaluate, train, train_step
from .optim import AdamW, clip_grad_norm, decayed_parameters, learning_rate
from .runs import LOCK_NAME, RUN_FILES, run_in_folder
from .sizes import (ARCHITECTURES, architecture, matched_ffn_dim, model_config, num_parameters,
                    training_memory)
from .state import TrainState

__all__ = ["ARCHITECTURES", "AdamW", "BATCH_PARTS", "CHECKPOINT_FORMAT", "LOCK_NAME", "RUN_FILES",
           "TrainConfig", "TrainState", "TrainingError", "TrainingInterrupted", "architecture",
           "batch_loss_and_grads", "clip_grad_norm", "decayed_parameters", "estimate_loss",
           "evaluate", "get_batch", "learning_rate", "load_checkpoint", "matched_ffn_dim",
           "model_config", "num_parameters", "run_in_folder", "save_checkpoint", "split_corpus",
           "split_loss", "train", "train_step", "training_memory"]

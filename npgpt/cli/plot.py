"""``npgpt plot``: the seed tutorial's pictures, the embedding heatmaps or the attention maps
of every layer and head (matplotlib, imported only when drawing)."""

from __future__ import annotations

import numpy as np

from ._options import MODEL_ARG, encode, load_model
from ._output import check_picture_path, draw
from ._parsing import CLIError, Command, arg


def _plot(args) -> int:
    from .. import viz

    if args.what == "attention" and args.prompt is None:
        raise CLIError("plot attention needs --prompt TEXT")
    check_picture_path(args.png)
    model = load_model(args.model)
    text = args.prompt if args.prompt is not None else "ROMEO:\nBut soft, what light"
    try:
        ids = encode(model, text)[: model.config.context_length]
    except CLIError:
        if args.prompt is not None:
            raise
        ids = np.arange(min(20, model.config.vocab_size, model.config.context_length))
    if args.what == "embeddings":
        draw(viz.plot_embeddings, model, ids, path=args.png, labels=model.tokenizer)
    else:
        draw(viz.plot_attention, model, ids, labels=model.tokenizer, path=args.png)
    print(f"wrote {args.png}")
    return 0


COMMAND = Command(
    name="plot", help="the seed's pictures: embeddings or attention maps",
    description="Draw the seed tutorial's embedding heatmaps, or the attention maps of "
                "every layer and head (needs the plot extra: pip install \"npgpt[plot]\").",
    examples=("npgpt plot embeddings --png embeddings.png",
              "npgpt plot attention --prompt 'ROMEO: But soft' --png attention.png"),
    arguments=(
        arg("what", choices=["embeddings", "attention"]),
        arg("--png", required=True),
        arg("--prompt", help="(default: 'ROMEO:\\nBut soft, what light' for embeddings; "
                             "attention needs one)"),
        MODEL_ARG),
    handler=_plot)

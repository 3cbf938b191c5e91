"""``npgpt inspect``: the next token's distribution, what each sampling strategy keeps of it
and what each would choose (a terminal chart; with --png, heatmaps too)."""

from __future__ import annotations

from ._options import MODEL_ARG, encode, load_model
from ._output import check_picture_path, draw
from ._parsing import NON_NEGATIVE_INT, POSITIVE_INT, Command, arg, option_error


def _inspect(args) -> int:
    from .. import viz

    if args.png:
        check_picture_path(args.png)
    model = load_model(args.model)
    ids = encode(model, args.prompt)
    window = ids[-model.config.context_length:]
    logits = model(window, last_only=True)
    try:
        report = viz.strategy_report(logits, seed=args.seed, temperature=args.temperature,
                                     top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                     typical_p=args.typical_p)
        text = viz.inspect_text(report, labels=model.tokenizer, top=args.top)
    except ValueError as err:
        raise option_error(err, COMMAND.arguments) from None
    if args.png:                              # drawn before anything is printed
        draw(viz.plot_strategies, report, labels=model.tokenizer, path=args.png)
    print(f"next token after {args.prompt!r} ({len(ids)} tokens):")
    print(text)
    if args.png:
        print(f"wrote {args.png}")
    return 0


COMMAND = Command(
    name="inspect", help="the next-token distribution and what each strategy does with it",
    description="For the next token: the model's distribution, what greedy, temperature, "
                "top-k, top-p, min-p and typical sampling keep, and what each would choose.",
    examples=("npgpt inspect --prompt 'ROMEO: I'",
              "npgpt inspect --prompt 'To be or not to b' --top-k 3 --top-p 0.5 --png strategies.png"),
    arguments=(
        MODEL_ARG,
        arg("-p", "--prompt", required=True),
        arg("--temperature", type=float, default=0.8),
        arg("--top-k", type=NON_NEGATIVE_INT, default=5),
        arg("--top-p", type=float, default=0.9),
        arg("--min-p", type=float, default=0.1),
        arg("--typical-p", type=float, default=0.9),
        arg("--seed", type=NON_NEGATIVE_INT, default=0),
        arg("--top", type=POSITIVE_INT, default=10, help="rows in the chart (default 10)"),
        arg("--png", help="also write the seed's heatmaps, one row per strategy")),
    handler=_inspect)

"""``npgpt convert IN OUT``: :func:`npgpt.convert.convert` on the command line."""

from __future__ import annotations

from ._parsing import CLIError, Command, arg


def _convert(args) -> int:
    """npgpt convert IN OUT: :func:`npgpt.convert.convert`, its errors as one line."""
    from ..convert import convert
    from ..io import CheckpointError
    try:
        written = convert(args.input, args.output, format=args.format, dtype=args.dtype)
    except (OSError, CheckpointError, ValueError) as err:
        raise CLIError(str(err).splitlines()[0]) from None
    print(f"wrote {args.output} ({written}, {args.dtype})")
    return 0


COMMAND = Command(
    name="convert", help="write a model as npgpt safetensors, a Hugging Face folder or GGUF",
    description="Load any model npgpt reads (a bundled name, safetensors, a PyTorch file, a "
                "Hugging Face folder, GGUF) and write it in another format.",
    examples=("npgpt convert run1 run1.gguf --dtype q8_0        # for llama.cpp / ollama",
              "npgpt convert model.gguf model-hf --format hf",
              "npgpt convert shakespeare-char sc.safetensors --dtype f16"),
    arguments=(
        arg("input", metavar="IN", help="a model npgpt.load reads"),
        arg("output", metavar="OUT", help="the file or folder to write"),
        arg("--format", choices=["safetensors", "hf", "gguf"],
            help="(default: gguf for *.gguf, safetensors for *.safetensors, else hf)"),
        arg("--dtype", choices=["f32", "f16", "q8_0"], default="f32",
            help="f16: safetensors or gguf; q8_0: gguf only")),
    handler=_convert)

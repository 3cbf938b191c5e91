"""The old import path of :mod:`npgpt.generation` (``from npgpt.generate import generate``),
kept for the command line's imports. ``npgpt.generate`` itself is the function: the package
imports this module before it binds that name, so that loading it later cannot rebind it.
Import from ``npgpt`` or ``npgpt.generation`` instead.
"""

from .generation import GenerateOutput, GenerationConfig, generate, stream  # noqa: F401

__all__ = ["GenerationConfig", "GenerateOutput", "generate", "stream"]

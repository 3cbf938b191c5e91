"""Chat with an instruct model: its own chat template rendered by hand (``template``)."""

from .template import Template, TemplateError, render

__all__ = ["Template", "TemplateError", "render"]

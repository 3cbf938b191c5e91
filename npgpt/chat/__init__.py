"""Chat with an instruct model: its chat template rendered by hand (:mod:`npgpt.chat.template`)
and a conversation that keeps its KV cache between turns (:mod:`npgpt.chat.session`)."""

from .session import Chat, apply_chat_template, end_of_turn_ids
from .template import Template, TemplateError, render

__all__ = ["Chat", "apply_chat_template", "end_of_turn_ids", "Template", "TemplateError", "render"]

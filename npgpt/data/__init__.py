"""Bundled models: ``npgpt.load("shakespeare-char")`` reads shakespeare-char.safetensors here."""

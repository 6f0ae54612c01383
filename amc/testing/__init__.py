"""Helpers for tests, benchmarks and examples: tiny models built offline, in seconds, from nothing."""

from amc.testing.tiny_model import CHAT_TEMPLATE, build_tiny_llama, math_sentences

__all__ = ["CHAT_TEMPLATE", "build_tiny_llama", "math_sentences"]

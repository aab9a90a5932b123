"""codex-openai-proxy: the OpenAI Chat Completions API, answered by the Codex CLI."""

__version__ = "0.1.0"

"""OpenAI's face, as vLLM's entrypoints/openai: a protocol module of request and response
models, and a serving module per endpoint (completions, models, tokenization)."""

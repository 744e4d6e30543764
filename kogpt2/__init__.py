"""KoGPT2 Korean text generation service."""

"""ollama-monitor: the watchman for self-hosted Ollama servers."""

__version__ = "0.1.0"

"""Base models: resolve a source (bundled GGUF, tiny, local folder, .gguf, hub id) to a local HF folder and load it."""

"""LongLLaDA: training-free long context for diffusion language models, and the tools to measure it."""

__version__ = "0.1.0"

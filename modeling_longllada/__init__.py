"""LongLLaDA remote-code model: LLaDA-compatible, with NTK RoPE scaling and a diffusion `generate()`.

Import this package to register `LongLLaDAConfig` / `LongLLaDAModelLM` with transformers' Auto classes.
"""

from .configuration_longllada import LongLLaDAConfig, critical_dimension, ntk_scaling_factor

__all__ = ["LongLLaDAConfig", "critical_dimension", "ntk_scaling_factor"]

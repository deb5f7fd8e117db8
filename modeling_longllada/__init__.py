"""LongLLaDA remote-code model: LLaDA-compatible, with NTK RoPE scaling and a diffusion `generate()`.

Importing this package registers `LongLLaDAConfig` / `LongLLaDAModelLM` with transformers' Auto classes, so
saved folders load without `trust_remote_code` when the package is installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_longllada import LongLLaDAConfig
from .generation_longllada import SAMPLER_DEFAULTS, DiffusionGenerateOutput, DiffusionGenerationConfig
from .modeling_longllada import LongLLaDAModelLM
from .rope_longllada import (
    critical_dimension,
    ntk_scaling_factor,
    ntk_supported_length,
    parse_rope_scaling,
    rope_scaling_from_args,
)

AutoConfig.register(LongLLaDAConfig.model_type, LongLLaDAConfig, exist_ok=True)
AutoModel.register(LongLLaDAConfig, LongLLaDAModelLM, exist_ok=True)
AutoModelForCausalLM.register(LongLLaDAConfig, LongLLaDAModelLM, exist_ok=True)

# Files that make up the remote code of a model repo (copied flat beside config.json).
REMOTE_CODE_FILES = (
    "configuration_longllada.py",
    "generation_longllada.py",
    "modeling_longllada.py",
    "rope_longllada.py",
)

__all__ = [
    "LongLLaDAConfig",
    "LongLLaDAModelLM",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "SAMPLER_DEFAULTS",
    "REMOTE_CODE_FILES",
    "critical_dimension",
    "ntk_scaling_factor",
    "ntk_supported_length",
    "parse_rope_scaling",
    "rope_scaling_from_args",
]

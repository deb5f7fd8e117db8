"""LongLLaDA remote-code models: LLaDA and Dream, with NTK RoPE scaling and a diffusion `generate()`.

Importing this package registers `LongLLaDAConfig` / `LongLLaDAModelLM` and `DreamConfig` / `DreamModel` with
transformers' Auto classes, so saved folders load without `trust_remote_code` when the package is installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_dream import DreamConfig
from .configuration_longllada import LongLLaDAConfig
from .generation_longllada import SAMPLER_DEFAULTS, DiffusionGenerateOutput, DiffusionGenerationConfig
from .modeling_dream import DreamModel
from .modeling_longllada import REMOTE_CODE_FILES, LongLLaDAModelLM
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
AutoConfig.register(DreamConfig.model_type, DreamConfig, exist_ok=True)
AutoModel.register(DreamConfig, DreamModel, exist_ok=True)
AutoModelForCausalLM.register(DreamConfig, DreamModel, exist_ok=True)

__all__ = [
    "LongLLaDAConfig",
    "LongLLaDAModelLM",
    "DreamConfig",
    "DreamModel",
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

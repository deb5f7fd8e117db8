"""LongLLaDA remote-code models: LLaDA, Dream and LLaDA-MoE, with NTK RoPE scaling and a diffusion `generate()`.

Importing this package registers `LongLLaDAConfig` / `LongLLaDAModelLM`, `DreamConfig` / `DreamModel` and
`LLaDAMoEConfig` / `LLaDAMoEModelLM` with transformers' Auto classes, so saved folders load without
`trust_remote_code` when the package is installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_dream import DreamConfig
from .configuration_lladamoe import LLaDAMoEConfig
from .configuration_longllada import LongLLaDAConfig
from .generation_longllada import SAMPLER_DEFAULTS, DiffusionGenerateOutput, DiffusionGenerationConfig
from .modeling_dream import DreamModel
from .modeling_lladamoe import LLaDAMoEModelLM
from .modeling_longllada import REMOTE_CODE_FILES, LongLLaDAModelLM
from .rope_longllada import (
    critical_dimension,
    diffusion_ntk_factor,
    ntk_scaling_factor,
    ntk_supported_length,
    parse_rope_scaling,
    rope_scaling_from_args,
    rope_scaling_per_length,
)
from .rope_tables_longllada import RopeTables, rope_tables


class OfficialLLaDAMoEConfig(LLaDAMoEConfig):
    """An official LLaDA-MoE ``config.json`` (``model_type: "lladamoe"``) read by this package's classes."""

    model_type = "lladamoe"

    def __init__(self, **kwargs):  # explicit: transformers 5 would generate one that skips ours
        super().__init__(**kwargs)


class OfficialLLaDAConfig(LongLLaDAConfig):
    """An official LLaDA ``config.json`` (``model_type: "llada"``) read by this package's classes."""

    model_type = "llada"

    def __init__(self, **kwargs):  # explicit: transformers 5 would generate one that skips ours
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # Some LLaDA-MoE checkpoints' config.json say "llada" (the type of the first release of their code): their
        # expert fields tell them apart, and they are read as LLaDA-MoE.
        if "expert_intermediate_size" in config_dict and "d_model" not in config_dict:
            return OfficialLLaDAMoEConfig.from_dict(config_dict, **kwargs)
        return super().from_dict(config_dict, **kwargs)


class OfficialDreamConfig(DreamConfig):
    """An official Dream-v0 ``config.json`` (``model_type: "Dream"``) read by this package's classes."""

    model_type = "Dream"

    def __init__(self, **kwargs):  # explicit: transformers 5 would generate one that skips ours
        super().__init__(**kwargs)


# Our own model types, and the official ones: with this package imported, transformers' Auto classes load an
# official checkpoint (a Hub id or a folder) with our classes when trust_remote_code is not set, since a
# registered model type is "local code" to transformers (trust_remote_code=True would pick the repo's own code).
AutoConfig.register(LongLLaDAConfig.model_type, LongLLaDAConfig, exist_ok=True)
AutoModel.register(LongLLaDAConfig, LongLLaDAModelLM, exist_ok=True)
AutoModelForCausalLM.register(LongLLaDAConfig, LongLLaDAModelLM, exist_ok=True)
AutoConfig.register(DreamConfig.model_type, DreamConfig, exist_ok=True)
AutoModel.register(DreamConfig, DreamModel, exist_ok=True)
AutoModelForCausalLM.register(DreamConfig, DreamModel, exist_ok=True)
AutoConfig.register(LLaDAMoEConfig.model_type, LLaDAMoEConfig, exist_ok=True)
AutoModel.register(LLaDAMoEConfig, LLaDAMoEModelLM, exist_ok=True)
AutoModelForCausalLM.register(LLaDAMoEConfig, LLaDAMoEModelLM, exist_ok=True)
for official, model_class in (
    (OfficialLLaDAConfig, LongLLaDAModelLM),
    (OfficialDreamConfig, DreamModel),
    (OfficialLLaDAMoEConfig, LLaDAMoEModelLM),
):
    AutoConfig.register(official.model_type, official, exist_ok=True)
    # The mappings' own register: the public one insists on model_class.config_class being this very class.
    AutoModel._model_mapping.register(official, model_class, exist_ok=True)
    AutoModelForCausalLM._model_mapping.register(official, model_class, exist_ok=True)

__all__ = [
    "LongLLaDAConfig",
    "LongLLaDAModelLM",
    "DreamConfig",
    "DreamModel",
    "LLaDAMoEConfig",
    "LLaDAMoEModelLM",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "SAMPLER_DEFAULTS",
    "REMOTE_CODE_FILES",
    "RopeTables",
    "critical_dimension",
    "diffusion_ntk_factor",
    "ntk_scaling_factor",
    "ntk_supported_length",
    "parse_rope_scaling",
    "rope_scaling_from_args",
    "rope_scaling_per_length",
    "rope_tables",
]

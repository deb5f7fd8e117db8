"""LongLLaDA remote-code models: LLaDA, Dream, LLaDA-MoE and LLaDA2, with NTK RoPE scaling and a diffusion `generate()`.

Importing this package registers every family of ``families.FAMILIES`` (our model types and the official ones) with
transformers' Auto classes, so saved folders and official checkpoints load without ``trust_remote_code`` when the
package is installed.
"""

# The registry first, as a package attribute too: a tool may have run families.py alone before (longllada.eval_help).
from . import families
from .configuration_dream import DreamConfig
from .configuration_llada2 import LLaDA2Config
from .configuration_lladamoe import LLaDAMoEConfig
from .configuration_longllada import LongLLaDAConfig
from .families import FAMILIES, Family, family_by_name, family_of_model_type
from .generation_longllada import SAMPLER_DEFAULTS, DiffusionGenerateOutput, DiffusionGenerationConfig
from .modeling_dream import DreamModel
from .modeling_llada2 import LLaDA2ModelLM
from .modeling_lladamoe import LLaDAMoEModelLM
from .modeling_longllada import REMOTE_CODE_FILES, LongLLaDAModelLM
from .registration import register_families, registered_config_class
from .rope_longllada import (
    critical_dimension,
    diffusion_ntk_factor,
    longrope_law_factors,
    ntk_scaling_factor,
    ntk_supported_length,
    parse_rope_scaling,
    rope_scaling_from_args,
    rope_scaling_per_length,
    supported_length,
)
from .rope_tables_longllada import RopeTables, rope_tables

# With this package imported, transformers' Auto classes load an official checkpoint (a Hub id or a folder) with our
# classes when trust_remote_code is not set, since a registered model type is "local code" to transformers (with
# trust_remote_code=True, transformers 4.x runs the repository's own code instead; 5.x keeps registered classes).
register_families()

__all__ = [
    "LongLLaDAConfig",
    "LongLLaDAModelLM",
    "DreamConfig",
    "DreamModel",
    "LLaDAMoEConfig",
    "LLaDAMoEModelLM",
    "LLaDA2Config",
    "LLaDA2ModelLM",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "SAMPLER_DEFAULTS",
    "FAMILIES",
    "Family",
    "families",
    "family_by_name",
    "family_of_model_type",
    "registered_config_class",
    "REMOTE_CODE_FILES",
    "RopeTables",
    "critical_dimension",
    "diffusion_ntk_factor",
    "longrope_law_factors",
    "ntk_scaling_factor",
    "ntk_supported_length",
    "parse_rope_scaling",
    "rope_scaling_from_args",
    "rope_scaling_per_length",
    "rope_tables",
    "supported_length",
]

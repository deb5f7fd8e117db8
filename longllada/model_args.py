"""The ``--model_args`` of ``--model longllada`` beyond lm-eval's ``hf`` model: each name with its default and
meaning, in one place. ``LongLLaDALM.__init__`` takes exactly these besides HFLM's own arguments (a test holds the
two together), ``longllada eval --help`` prints them, and this module imports nothing heavy so that the help is
instant.
"""

from __future__ import annotations

# name -> (default, meaning). Grouped as the help prints them.
SAMPLER_ARGS: dict[str, tuple[str, str]] = {
    "steps": ("generation_config", "denoising steps in all (LLaDA repos: one token per step)"),
    "block_length": ("generation_config", "tokens a block; blocks are decoded left to right"),
    "remasking": ("generation_config", "LLaDA: low_confidence | random"),
    "alg": ("generation_config", "Dream: origin | maskgit_plus | topk_margin | entropy"),
    "alg_temp": ("generation_config", "Dream: temperature of the confidence order"),
    "temperature": ("the task's", "sampling temperature, 0 greedy; beats the task's do_sample/temperature"),
    "top_p": ("generation_config", "Dream: nucleus filter"),
    "top_k": ("generation_config", "Dream: top-k filter"),
    "eps": ("generation_config", "Dream: the last time step"),
    "cfg_scale": ("0", "classifier-free guidance scale (0: off)"),
    "cache": ("none", "none (exact) | prefix | dual: Fast-dLLM's key/value caches"),
    "threshold": ("none", "commit every token above this confidence, at least one a step (Fast-dLLM)"),
}
LIKELIHOOD_ARGS: dict[str, tuple[str, str]] = {
    "mc_num": ("128", "Monte-Carlo samples of each loglikelihood (1 is enough for one-token answers)"),
    "mc_batch_size": ("32", "samples a forward pass"),
    "mc_seed": ("1234", "mask and sampling seed, the same for every request"),
    "greedy_check": ("True", "compute is_greedy with the sampler (one pass a continuation token), else report False"),
    "rolling_chunk": ("64", "chunk of loglikelihood_rolling, each scored given all earlier tokens"),
}
BATCH_ARGS: dict[str, tuple[str, str]] = {
    "batch_classes": ("8", "a batch holds documents whose ids agree modulo this: the same answers on 1, 2, 4 "
                      "or 8 data-parallel processes (1: any documents of a length)"),
}  # fmt: skip
ROPE_ARGS: dict[str, tuple[str, str]] = {
    "ntk_factor": ("none", "NTK: RoPE base θ·λ"),
    "ntk_target": ("none", "NTK: λ from the scaling law for this length"),
    "rope_scaling": ("none", "any spec, every family: ntk:λ, ntk-target:T, ntk-per-length (diffusion), "
                     "diffusion-ntk:T, linear:F, yarn:F, dynamic:F, llama3:F, longrope:FILE.json[:T], "
                     "longrope:MODEL[:T], none (drop a checkpoint's own); a dict (JSON) needs the whole "
                     "--model_args as one JSON object"),
}  # fmt: skip
LOADING_ARGS: dict[str, tuple[str, str]] = {
    "trust_remote_code": ("False", "let a model outside the families, or its tokenizer, run the code of its repo"),
}
MODEL_ARGS: dict[str, tuple[str, str]] = {**SAMPLER_ARGS, **LIKELIHOOD_ARGS, **BATCH_ARGS, **ROPE_ARGS, **LOADING_ARGS}
# For the diffusion families only (a causal LM runs as lm-eval's hf model, which takes none of them).
DIFFUSION_ONLY = (*SAMPLER_ARGS, *LIKELIHOOD_ARGS, *BATCH_ARGS)

"""The ``--model_args`` of ``--model longllada`` beyond lm-eval's ``hf`` model: each name with its default and
meaning, in one place. ``LongLLaDALM.__init__`` takes exactly these besides HFLM's own arguments (a test holds the
two together), ``longllada eval --help`` prints them, and this module imports nothing heavy so that the help is
instant.
"""

from __future__ import annotations

# name -> (default, meaning). Grouped as the help prints them; the help adds, from the family registry, the families
# that take a sampler argument where not all do.
SAMPLER_ARGS: dict[str, tuple[str, str]] = {
    "steps": ("generation_config", "denoising steps in all (one block's with block diffusion)"),
    "block_length": ("generation_config", "tokens a block; blocks are decoded left to right"),
    "remasking": ("generation_config", "which masks are committed first: low_confidence | random (or an alg value)"),
    "alg": ("generation_config", "origin | maskgit_plus | topk_margin | entropy"),
    "alg_temp": ("generation_config", "temperature of the confidence order"),
    "temperature": ("the task's", "sampling temperature, 0 greedy; beats the task's do_sample/temperature"),
    "top_p": ("generation_config", "nucleus filter"),
    "top_k": ("generation_config", "top-k filter"),
    "eps": ("generation_config", "the last time step"),
    "cfg_scale": ("0", "classifier-free guidance scale (0: off)"),
    "cache": ("none", "none (exact) | prefix | dual: Fast-dLLM's key/value caches (block diffusion: prefix, its "
              "exact block cache, by default)"),
    "threshold": ("none", "commit every token above this confidence, at least one a step (Fast-dLLM; block "
                  "diffusion: at least the schedule's count, 0.95 by default)"),
    "minimal_topk": ("generation_config", "steps capped at max_new_tokens // minimal_topk"),
    "eos_early_stop": ("generation_config", "stop a row at the step that commits its EOS"),
    "editing_threshold": ("generation_config", "token editing above this confidence (LLaDA2.1's sampler; none: "
                          "LLaDA2.0's)"),
    "max_post_steps": ("generation_config", "editing steps after a block is filled"),
    "num_to_transfer": ("generation_config", "masks filled at least a step"),
    # transformers' names (DiffusionGemmaGenerationConfig; canvas_length is the model config's)
    "max_denoising_steps": ("generation_config", "decoder passes a canvas at most"),
    "t_min": ("generation_config", "temperature at a canvas's last step"),
    "t_max": ("generation_config", "temperature at its first step (> t_min)"),
    "entropy_bound": ("generation_config", "entropy budget of the tokens a step accepts"),
    "stability_threshold": ("generation_config", "steps a canvas's argmax stays unchanged before it may stop"),
    "confidence_threshold": ("generation_config", "mean entropy below which a stable canvas stops"),
    "canvas_length": ("config", "tokens a canvas (the checkpoint's 256)"),
}  # fmt: skip
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

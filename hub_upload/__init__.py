"""Publish LongLLaDA model repos to the Hugging Face Hub (`python -m hub_upload`, `longllada upload`).

Modules: ``options`` (parsing of the command-line values), ``build`` (the repo folder: config conversion,
remote code, tokenizer, weights), ``model_card`` (README.md), ``push`` (the ``HfApi`` calls), ``cli`` (the
arguments shared by both entry points). Heavy imports happen inside the functions that need them.
"""

from hub_upload.cli import add_arguments, build_parser, main, run

__all__ = ["add_arguments", "build_parser", "main", "run"]

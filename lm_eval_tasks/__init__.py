"""lm-eval task folders of LongLLaDA (``longllada_niah``, ``longllada_ruler``, ``longllada_longbench``).

lm-eval finds tasks outside its own tree only through ``--include_path``; ``TASKS_DIR`` is the folder to pass::

    lm_eval --include_path "$(python -c 'import lm_eval_tasks; print(lm_eval_tasks.TASKS_DIR)')" ...

``longllada eval`` adds it by itself.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR: Path = Path(__file__).resolve().parent

__all__ = ["TASKS_DIR"]

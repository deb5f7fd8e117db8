"""Shared fixtures: one tiny random model for the test run, its tokenizer, and isolated subprocesses.

``run_isolated`` runs Python code where this project is NOT importable (``python -I``: no PYTHONPATH, no user
site, no script or cwd directory on ``sys.path``; cwd a fresh temporary folder), so a test that loads a folder
with ``trust_remote_code=True`` proves that the folder's own remote code works on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the suite imports the project from the checkout, installed or not
    sys.path.insert(0, str(REPO))

ISOLATED_TIMEOUT_S = 300
# NIAH grids are cached between runs (lm_eval_tasks/longllada_niah); the suite keeps its own cache, fresh each
# test run, so that no grid of an earlier run is read (subprocesses inherit it).
os.environ["LONGLLADA_CACHE"] = tempfile.mkdtemp(prefix="longllada-test-cache-")
# transformers copies a folder's remote code into its module cache under the folder's name alone: one cache per
# pytest process, so that two folders of one name (tmp_path names repeat across pytest-xdist workers and concurrent runs)
# never overwrite each other's files there.
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="longllada-test-modules-")
# Under pytest-xdist (`make test` runs -n 2 on 2 cores) each worker computes on one thread: two workers of two
# threads each would oversubscribe the cores. Set before torch is imported; subprocesses inherit it.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def isolated_env() -> dict[str, str]:
    """The current environment minus anything that would make the project importable, offline, 2 threads (or the
    pytest process's ``OMP_NUM_THREADS``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_isolated(code: str, cwd: str | os.PathLike | None = None, timeout: float = ISOLATED_TIMEOUT_S) -> str:
    """Run ``code`` with ``sys.executable -I -c`` in ``cwd`` (default: a new empty temporary folder); return
    its stdout. Fails the test (with stdout and stderr) when the process exits non-zero.

    In an editable install the project stays importable through the venv's site-packages; the code therefore
    first removes those routes, then checks that ``modeling_longllada``, ``longllada`` and ``hub_upload``
    cannot be imported, and fails loudly if they can (a proof of isolation, not an assumption).
    """
    # An editable install (`make install`) maps the project in through site-packages: drop the checkout from
    # sys.path and setuptools' editable finders from sys.meta_path before checking.
    guard = (
        "import importlib.util as _u, os as _o, sys as _s\n"
        f"_repo = {str(REPO.resolve())!r}\n"
        "_s.path[:] = [p for p in _s.path if _o.path.realpath(p or '.') != _repo and '__editable__' not in p]\n"
        "_s.meta_path[:] = [f for f in _s.meta_path\n"
        "                   if not (f if isinstance(f, type) else type(f)).__module__.startswith('__editable__')]\n"
        "_s.path_importer_cache.clear()\n"
        "_leak = [m for m in ('modeling_longllada', 'longllada', 'hub_upload') if _u.find_spec(m) is not None]\n"
        "assert not _leak, f'project importable in the isolated process: {_leak} via {_s.path}'\n"
        "del _u, _o, _s, _repo, _leak\n"
    )
    with tempfile.TemporaryDirectory(prefix="isolated") as scratch:
        result = subprocess.run(
            [sys.executable, "-I", "-c", guard + code],
            cwd=str(cwd) if cwd is not None else scratch,
            env=isolated_env(),
            stdin=subprocess.DEVNULL,  # never wait on a prompt (transformers asks before running remote code)
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if result.returncode != 0:
        pytest.fail(
            f"isolated process exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result.stdout


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): tiny
    models gain nothing from threads, and two threads on a shared 2-core machine can stall."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", name="run_isolated")
def run_isolated_fixture() -> Callable[..., str]:
    """``run_isolated`` as a fixture (also importable: ``from conftest import run_isolated``)."""
    return run_isolated


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model folder built once per test run with ``build_tiny_model``'s defaults.

    Shared by many tests: treat it as read-only (copy it before changing anything). Its folder name has no
    '.', which transformers 4.46 cannot load remote code from.
    """
    from longllada.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "tiny-llada")


@pytest.fixture(scope="session")
def tiny_dream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Dream folder (``build_tiny_model(arch="dream")``), read-only like ``tiny_model_dir``."""
    from longllada.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_dream") / "tiny-dream", arch="dream")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DiffusionGemma folder (``build_tiny_diffusion_gemma``'s defaults: 2 layers, canvas 8, trained
    window 256), read-only like ``tiny_model_dir``; skips where transformers has no DiffusionGemma."""
    from modeling_longllada.families import family_by_name

    family = family_by_name("diffusion_gemma")
    if not family.is_supported():
        pytest.skip(f"DiffusionGemma needs transformers >= {family.min_transformers}")
    from longllada.tiny_diffusion_gemma import build_tiny_diffusion_gemma

    return build_tiny_diffusion_gemma(tmp_path_factory.mktemp("tiny_gemma") / "tiny-diffusion-gemma")


@pytest.fixture(scope="session")
def tiny_family_dir(
    tiny_model_dir: Path, tiny_dream_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """A function from a family's name (``modeling_longllada.families``) to its tiny random model folder
    (``build_tiny_model(arch=name)``), built once per test run; LLaDA's and Dream's are ``tiny_model_dir`` and
    ``tiny_dream_dir``. Read-only, like them. Skips the calling test for a family the installed transformers
    cannot run."""
    from modeling_longllada.families import family_by_name

    folders = {"llada": tiny_model_dir, "dream": tiny_dream_dir}

    def folder(name: str) -> Path:
        family = family_by_name(name)
        if not family.is_supported():
            pytest.skip(f"{family.title} needs transformers >= {family.min_transformers}")
        if name not in folders:
            from longllada.tiny_model import build_tiny_model

            folders[name] = build_tiny_model(tmp_path_factory.mktemp(f"tiny_{name}") / f"tiny-{name}", arch=name)
        return folders[name]

    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    """The tiny model's tokenizer, loaded with ``AutoTokenizer`` from its folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)

"""`longllada rope-sweep`: context-extension methods side by side, in one process, one figure and one table.

A sweep is a set of settings: every model given (``--model``, repeatable) under every RoPE scaling asked for,
either methods × factors (``--methods ntk,linear,yarn --factors 2,4,8``; a factor is a multiple of the model's
trained length) or specs of the one parser as they are (``--rope-scaling SPEC``, repeatable). A method with a factor
s reaches s × the trained length T:

==================  ==========================================================================================
``none``            the trained RoPE, no scaling (once, no factor)
``ntk``             the LongLLaDA paper's NTK: ``ntk-target:sT``, λ from the extrapolation scaling law
``diffusion-ntk``   UltraLLaDA's diffusion-aware NTK: ``diffusion-ntk:sT``
``ntk-per-length``  the scaling law's λ chosen per pass from its length (once; diffusion models)
``linear``          position interpolation: ``linear:s``
``yarn``            YaRN: ``yarn:s``
``dynamic``         transformers' dynamic NTK: ``dynamic:s``
``llama3``          LLaMA-3.1's rule: ``llama3:s``
``longrope-law``    LongRoPE with factors from the scaling law (``rope_longllada.longrope_law_factors``, not
                    searched), written to ``factors/`` and given as ``longrope:FILE.json:sT``
==================  ==========================================================================================

Each setting runs the needle-in-a-haystack grid through lm-eval (``longllada eval``'s settings, ``--model
longllada``, every setting in this process; results under ``OUT/niah``) and the perplexity curve (``longllada
ppl``'s scorer; ``OUT/ppl/SETTING.jsonl``). Then one figure, ``OUT/rope_comparison.png``: a heatmap panel per
setting and every perplexity curve on one axis; and one table, ``OUT/rope_comparison.md`` / ``.csv``: per setting
the mean NIAH score inside and past the trained length (and at each length), the perplexity at the trained length,
of the tokens past it, and at the longest length (``longllada.tables``).

Everything is checked before any model loads (the settings as ``--model longllada`` checks them, each spec against
its model's config, the grid, the text's length, ``--out``); a failure is one ``longllada rope-sweep: error:``
line. An interrupted sweep resumes: the finished NIAH settings are recorded in ``OUT/niah/longllada_settings.json``
(``longllada eval``'s progress file) and skipped by a rerun of the same command, and each perplexity curve resumes
from its last chunk. Files in ``OUT`` are written only when absent or written by this command and unchanged since
(``OUT/rope_sweep.json`` records them with their SHA-256); one sweep at a time writes a folder (a lock).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from longllada.cli import MAX_COUNT, MAX_SEED, int_arg

WRITTEN_BY = "longllada rope-sweep"
RECORD_FILE = "rope_sweep.json"
FIGURE_FILE = "rope_comparison.png"
TABLE_FILES = ("rope_comparison.md", "rope_comparison.csv")
NIAH_DIR, PPL_DIR, FACTORS_DIR = "niah", "ppl", "factors"
TASK = "longllada_niah"
# Methods that take no factor run once per model.
ONCE = ("none", "ntk-per-length")
METHODS = ("none", "ntk", "diffusion-ntk", "ntk-per-length", "linear", "yarn", "dynamic", "llama3", "longrope-law")
DEFAULT_METHODS = "none,ntk,linear,yarn,longrope-law"
# Line style per factor (in the order the factors are given), colour per method, in the perplexity panel.
FACTOR_STYLES = ("-", "--", ":", "-.")
WINDOW_MARGIN = 64  # tokens of lm-eval's window beyond the longest prompt and its answer


@dataclass
class SweepSetting:
    """One model under one RoPE scaling."""

    name: str  # the panel's and the table's label
    model: str  # folder or Hub id, as given
    model_name: str
    method: str  # a METHODS name, or "spec" for a --rope-scaling given as it is
    factor: float | None  # s: the multiple of the trained length the method reaches (None: no factor)
    spec: str | dict[str, Any]  # what the model gets as rope_scaling
    diffusion: bool
    trained_length: int = 0
    context_window: int = 0
    rope_factor: Any = None  # the factor the run records (λ for NTK, s for the others, "per length")
    slug: str = ""  # a file name
    factors_file: Path | None = None  # longrope-law: its factor table, under OUT/factors
    model_args: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False  # the model (outside the families) may run its repo's own code

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "method": self.method, "factor": self.factor, "spec": self.spec,
            "trained_length": self.trained_length, "context_window": self.context_window,
            "rope_factor": self.rope_factor, "ppl": f"{PPL_DIR}/{self.slug}.jsonl",
        }  # fmt: skip


# -- the settings ----------------------------------------------------------------------------------------------


def _factor_text(factor: float) -> str:
    return f"{factor:g}"


def _number_list(text: str, flag: str, integer: bool, minimum: float, maximum: float = MAX_COUNT) -> list:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"{flag} {text!r} is empty; allowed: a comma-separated list")
    values = []
    for item in items:
        try:
            value = int(item, 10) if integer else float(item)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not minimum <= value <= maximum:
            kind = "integers" if integer else "finite numbers"
            raise ValueError(
                f"{flag} {text!r}: {item!r} is not allowed; allowed: {kind} >= {minimum:g} and <= {maximum}, "
                "comma-separated"
            )
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} {text!r} names a value twice; allowed: each once")
    return values


def parse_methods(text: str) -> list[str]:
    """``--methods``: names of :data:`METHODS`, comma-separated, each once."""
    names = [name.strip().lower().replace("_", "-") for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if not names or unknown:
        raise ValueError(f"--methods {text!r}: {unknown or 'none given'}; allowed: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--methods {text!r} names a method twice; allowed: each once")
    return names


def method_spec(method: str, factor: float | None, trained: int, factors_file: Path | None = None) -> str:
    """The parser's spec for ``method`` reaching ``factor`` × ``trained`` (see the module's table)."""
    target = int(round(factor * trained)) if factor is not None else None
    if method == "none":
        return "none"
    if method == "ntk-per-length":
        return "ntk-per-length"
    if method in ("ntk", "diffusion-ntk"):
        return f"{'ntk-target' if method == 'ntk' else 'diffusion-ntk'}:{target}"
    if method == "longrope-law":
        return f"longrope:{factors_file}:{target}"
    return f"{method}:{_factor_text(factor)}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "setting"


def _model_name(model: str) -> str:
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model.rsplit("/", 1)[-1]


def build_settings(
    models: Sequence[str], methods: Sequence[str], factors: Sequence[float], specs: Sequence[str], out: Path,
    trust_remote_code: bool = False,
) -> list[SweepSetting]:  # fmt: skip
    """Every model × (methods × factors, then the specs as given), in that order; nothing is loaded (only the
    models' configs are read: a model outside the families with its own code only with ``trust_remote_code``)."""
    from longllada.loading import model_family
    from longllada.rope_scaling import causal_trained_length
    from modeling_longllada.rope_longllada import branch_name, parse_rope_scaling, spec_label

    settings: list[SweepSetting] = []
    several = len(models) > 1
    for model in models:
        family, _ = model_family(model)
        name = _model_name(model)
        config = _config(model, trust_remote_code)
        trained = int(config.trained_length) if family is not None else causal_trained_length(config)
        chosen: list[tuple[str, float | None, str | dict, Path | None]] = []
        for method in methods:
            for factor in [None] if method in ONCE else factors:
                factors_file = None
                if method == "longrope-law":
                    # as --out is given (not resolved): a relative --out keeps the machine's folders out of the spec,
                    # hence out of every record and results file, and a rerun from the same folder resumes
                    factors_file = out / FACTORS_DIR / f"{_slug(name)}_{int(round(factor * trained))}.json"
                chosen.append((method, factor, method_spec(method, factor, trained, factors_file), factors_file))
        for given in specs:
            parsed = parse_rope_scaling(given, field="--rope-scaling")
            label = spec_label(parsed)
            chosen.append(("spec", None, label if not label.startswith("{") else parsed, None))
        for method, factor, spec, factors_file in chosen:
            if method == "spec":
                label = spec if isinstance(spec, str) else spec_label(spec)
                parsed = parse_rope_scaling(spec)
                title = label if len(label) <= 40 else f"{parsed['type']} (JSON)"
                slug = branch_name(parsed) if parsed is not None else "none"
            else:
                title = method if factor is None else f"{method} ×{_factor_text(factor)}"
                slug = method if factor is None else f"{method}-x{_factor_text(factor)}"
            settings.append(SweepSetting(
                name=f"{name}: {title}" if several else title, model=model, model_name=name, method=method,
                factor=factor, spec=spec, diffusion=family is not None, trained_length=trained,
                slug=_slug(f"{name}_{slug}" if several else slug), factors_file=factors_file,
                trust_remote_code=trust_remote_code,
            ))  # fmt: skip
    return settings


def _config(model: str, trust_remote_code: bool = False) -> Any:
    from longllada.loading import load_config

    return load_config(model, trust_remote_code=trust_remote_code)


def check_setting_rope(setting: SweepSetting, law_factors: dict[str, list[float]]) -> None:
    """Apply the setting's scaling to a fresh copy of its model's config, as loading will (a factor table of the
    wrong length, a target below the trained length, a per-length NTK on a causal LM: refused here, naming the
    setting); fill in its window and recorded factor."""
    from longllada.rope_scaling import apply_rope_scaling, causal_context_window, is_ours, scaling_factor
    from modeling_longllada import parse_rope_scaling

    config = _config(setting.model, setting.trust_remote_code)
    spec = setting.spec
    if setting.method == "longrope-law":  # its file is written only once every setting is checked
        target = int(round(setting.factor * setting.trained_length))
        spec = {"type": "longrope", "long_factor": law_factors[setting.slug], "target_length": target}
    try:
        applied = apply_rope_scaling(config, spec, setting.trained_length)
    except ValueError as err:
        raise ValueError(f"setting {setting.name!r} ({setting.model}, rope_scaling {setting.spec}): {err}") from None
    if is_ours(config):
        setting.context_window = int(config.rope_supported_length)
        setting.rope_factor = scaling_factor(config)
    else:
        parsed = parse_rope_scaling(spec)
        setting.context_window = causal_context_window(config, parsed, applied, setting.trained_length)
        setting.rope_factor = applied.get("factor", 1)


def law_factor_tables(settings: Sequence[SweepSetting]) -> dict[str, list[float]]:
    """The LongRoPE factors of each ``longrope-law`` setting (slug -> table), from its model's config."""
    from longllada.rope_scaling import rotary_parameters
    from modeling_longllada import longrope_law_factors

    tables = {}
    for setting in settings:
        if setting.method != "longrope-law":
            continue
        rotary_dim, theta = rotary_parameters(_config(setting.model, setting.trust_remote_code))
        target = int(round(setting.factor * setting.trained_length))
        tables[setting.slug] = longrope_law_factors(rotary_dim, theta, setting.trained_length, target)
    return tables


# -- the sweep ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOptions:
    """What every setting shares."""

    lengths: list[int]
    depths: list[float]
    needles: int
    gen_tokens: int
    cache: str
    ppl_max_length: int
    chunk: int
    mc: int
    batch_size: int
    device: str
    dtype: str
    seed: int
    text: str | None
    title: str | None
    progress: bool


def niah_model_args(setting: SweepSetting, options: SweepOptions) -> dict[str, Any]:
    """``--model longllada``'s arguments of a setting: its model and scaling, no truncation of the longest prompt,
    and for a diffusion model one block of ``gen_tokens`` decoded one token a step (the paper's setting), with
    Fast-dLLM's key/value cache when ``cache`` is not ``none``."""
    window = max(options.lengths) + options.gen_tokens + WINDOW_MARGIN
    args: dict[str, Any] = {"pretrained": setting.model, "rope_scaling": setting.spec, "max_length": window,
                            "dtype": options.dtype}  # fmt: skip
    if setting.trust_remote_code:
        args["trust_remote_code"] = True
    if setting.diffusion:
        args.update(steps=options.gen_tokens, block_length=options.gen_tokens)
        if options.cache != "none":
            args["cache"] = options.cache
    return args


def niah_argv(settings: Sequence[SweepSetting], options: SweepOptions, out: Path) -> list[str]:
    """The ``longllada eval`` command line of the needle grids: one ``--model_args`` per setting, each a JSON object
    (a spec of any form passes whole; lm-eval's key=value form would cut a JSON one at its commas)."""
    grid = {"context_lengths": options.lengths, "depths": options.depths, "num_repeats": options.needles,
            "seed": options.seed}  # fmt: skip
    argv = ["run", "--model", "longllada"]
    for setting in settings:
        argv += ["--model_args", json.dumps(setting.model_args)]
    argv += ["--tasks", TASK, "--metadata", json.dumps(grid), "--output_path", str(out / NIAH_DIR), "--log_samples",
             "--device", options.device, "--batch_size", str(options.batch_size), "--seed", str(options.seed),
             "--gen_kwargs", f"max_gen_toks={options.gen_tokens}"]  # fmt: skip
    return argv


def check_sweep(settings: list[SweepSetting], options: SweepOptions, out: Path) -> tuple[Any, dict[str, list[float]]]:
    """Every check before a model loads; returns the output folder's record (:class:`OwnedFolder`) and the
    LongRoPE factor tables of the ``longrope-law`` settings."""
    from longllada.eval_cli import check_output_path
    from longllada.niah_plot import MAX_PANELS
    from longllada.owned_files import OwnedFolder

    if not settings:
        raise ValueError("no settings: give --methods (with --factors) and/or --rope-scaling")
    if len(settings) > MAX_PANELS:
        raise ValueError(
            f"{len(settings)} settings ({len(settings) // max(1, len({s.model for s in settings}))} a model); allowed: "
            f"at most {MAX_PANELS} in one figure: fewer methods, factors or models (or one sweep per model)"
        )
    names = [setting.name for setting in settings]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"settings {twice} are asked for twice; allowed: each setting once")
    folder = OwnedFolder(out, RECORD_FILE, WRITTEN_BY)
    tables = law_factor_tables(settings)
    for setting in settings:
        check_setting_rope(setting, tables)
        setting.model_args = niah_model_args(setting, options)
    factor_files = [_relative(s.factors_file, out) for s in settings if s.factors_file is not None]
    folder.check([FIGURE_FILE, *TABLE_FILES, *factor_files])
    check_output_path(out / NIAH_DIR, [("", s.model_args) for s in settings])
    _check_ppl(settings, options, out)
    return folder, tables


def check_niah(settings: Sequence[SweepSetting], options: SweepOptions) -> None:
    """lm-eval's checks of every setting before any loads (``longllada eval``'s: the arguments as ``--model
    longllada`` takes them, the grid), once the factor files the specs name are written."""
    from longllada.eval_cli import check_settings

    grid = {"context_lengths": options.lengths, "depths": options.depths, "num_repeats": options.needles,
            "seed": options.seed}  # fmt: skip
    check_settings([(s.name, dict(s.model_args)) for s in settings], "longllada", [TASK], grid)


def _check_ppl(settings: Sequence[SweepSetting], options: SweepOptions, out: Path) -> None:
    """The perplexity curves' checks that need no weights: the text holds ``ppl_max_length`` tokens for each model's
    tokenizer, and each results file is absent or a run of ``longllada ppl`` (which resumes it)."""
    from longllada.perplexity.curve import load_text, tokenize_text
    from longllada.perplexity.loading import load_tokenizer
    from longllada.perplexity.results import ResultsFile

    content, label = load_text(options.text)
    counted: dict[str, int] = {}
    for setting in settings:
        if setting.model not in counted:
            tokenizer = load_tokenizer(setting.model, trust_remote_code=setting.trust_remote_code)
            counted[setting.model] = len(tokenize_text(tokenizer, content))
        if counted[setting.model] < options.ppl_max_length:
            raise ValueError(
                f"--ppl-max-length {options.ppl_max_length} is beyond the text: {label} has {counted[setting.model]} "
                f"tokens with {setting.model_name}'s tokenizer; allowed: at most {counted[setting.model]}"
            )
        path = out / PPL_DIR / f"{setting.slug}.jsonl"
        if path.exists():
            ResultsFile(path, overwrite=False).close()  # a file that is no run of `longllada ppl` is refused


def run_sweep(
    settings: list[SweepSetting], options: SweepOptions, out: Path, command: Sequence[str] = ()
) -> dict[str, Any]:
    """Check, then run every setting (needle grids, then perplexity curves), then draw and tabulate; returns the
    record written to ``OUT/rope_sweep.json`` (with ``command``, the command line that made it)."""
    from longllada.output_lock import OutputLock

    out = out.expanduser()
    folder, tables = check_sweep(settings, options, out)
    with OutputLock(out, WRITTEN_BY):
        for setting in settings:  # ours, checked above: written now, since lm-eval's checks read them
            if setting.factors_file is not None:
                table = (json.dumps(tables[setting.slug]) + "\n").encode()
                folder.write(_relative(setting.factors_file, out), table)
        check_niah(settings, options)
        folder.extra.update(command=list(command), settings=[s.record() for s in settings])
        folder.save()
        return _run(settings, options, out, folder)


def _run(settings: list[SweepSetting], options: SweepOptions, out: Path, folder: Any) -> dict:
    from tqdm.auto import tqdm

    from longllada.eval_cli import run_eval
    from longllada.perplexity import perplexity_curve

    started = time.time()
    bar = tqdm(total=2 * len(settings), desc="rope-sweep", unit="run", disable=not options.progress, file=sys.stderr)
    try:

        def heard(position: int, total: int, status: str) -> None:
            bar.set_postfix_str(f"NIAH {settings[position - 1].name}: {status}")
            bar.update(1)

        code = run_eval(niah_argv(settings, options, out), on_setting=heard, command=WRITTEN_BY)
        if code != 0:
            raise SweepFailed(code)
        for setting in settings:
            bar.set_postfix_str(f"ppl {setting.name}")
            perplexity_curve(
                setting.model, out=out / PPL_DIR / f"{setting.slug}.jsonl", text=options.text,
                max_length=options.ppl_max_length, chunk=options.chunk, mc=options.mc, rope_scaling=setting.spec,
                dtype=options.dtype, device=options.device, seed=options.seed, batch_size=options.mc,
                progress=options.progress, trust_remote_code=setting.trust_remote_code,
            )  # fmt: skip
            bar.update(1)
    finally:
        bar.close()
    record = draw_and_tabulate(settings, options, out, folder)
    record["seconds"] = round(time.time() - started, 1)
    folder.extra.update(record)
    folder.save()
    return folder.extra


def _relative(path: Path, out: Path) -> str:
    return str(path.resolve().relative_to(out.resolve()))


class SweepFailed(Exception):
    """The needle grids stopped with an error, already reported in one line: the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# -- the picture and the table -------------------------------------------------------------------------------------


def niah_grids(settings: Sequence[SweepSetting], out: Path) -> list[Any]:
    """Each setting's needle grid from lm-eval's output in ``OUT/niah``: the run whose recorded ``model_args`` are
    the setting's (the newest when it ran more than once), titled with the setting's name."""
    from longllada.niah_plot import find_runs, read_run
    from longllada.run_info import read_results

    runs: dict[str, tuple[Path, Path | None]] = {}
    for results, samples in find_runs([out / NIAH_DIR], TASK):
        if results is None:
            continue
        model_args = (read_results(results).get("config") or {}).get("model_args")
        runs[json.dumps(model_args, sort_keys=True)] = (results, samples)  # oldest first: the newest stays
    grids = []
    for setting in settings:
        found = runs.get(json.dumps(setting.model_args, sort_keys=True))
        if found is None:
            raise ValueError(f"setting {setting.name!r}: no lm-eval results of it under {out / NIAH_DIR}")
        grids.append(replace(read_run(*found, TASK), title=setting.name))
    return grids


def draw_and_tabulate(settings: Sequence[SweepSetting], options: SweepOptions, out: Path, folder: Any) -> dict:
    """Write the figure and the tables (see the module); returns what the record keeps of them."""
    from longllada.perplexity import read_run
    from longllada.tables import Setting, comparison_tables, csv_text

    grids = niah_grids(settings, out)
    curves = [read_run(out / PPL_DIR / f"{setting.slug}.jsonl") for setting in settings]
    folder.write(FIGURE_FILE, figure_bytes(settings, grids, curves, options))
    rows = []
    for setting, grid, curve in zip(settings, grids, curves):
        cells = {(n, d): grid.score(n, d) for n in grid.lengths for d in grid.depths if grid.score(n, d) is not None}
        columns = {"model": setting.model_name, "method": setting.method, "factor": setting.factor,
                   "rope_scaling": setting.spec if isinstance(setting.spec, str) else json.dumps(setting.spec),
                   "rope_factor": setting.rope_factor, "context_window": setting.context_window,
                   "kind": "diffusion" if setting.diffusion else "autoregressive"}  # fmt: skip
        rows.append(Setting(setting.name, setting.trained_length, grid.source, columns, niah=cells,
                            ppl=(curve.lengths, curve.ppl)))  # fmt: skip
    title = options.title or f"RoPE extension methods: {', '.join(dict.fromkeys(s.model_name for s in settings))}"
    markdown, csv_rows = comparison_tables(rows, title)
    folder.write(TABLE_FILES[0], markdown.encode("utf-8"))
    folder.write(TABLE_FILES[1], csv_text(csv_rows).encode("utf-8"))
    return {"table": csv_rows}


def figure_bytes(settings: Sequence[SweepSetting], grids: Sequence[Any], curves: Sequence[Any], options: Any) -> bytes:
    """The PNG of the sweep: the heatmap panels above, every perplexity curve on one axis below (log scale; colour
    by method, line style by factor), marked as written by ``longllada rope-sweep``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from longllada.figure_files import figure_metadata
    from longllada.niah_plot import draw_heatmaps, heatmaps_size
    from longllada.ppl_plot import draw_curves

    width, height = heatmaps_size(grids)
    width = max(width, 10.0)
    curves_height = 5.5
    figure = Figure(figsize=(width, height + curves_height), dpi=100, layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[height, curves_height])
    title = options.title or f"RoPE extension methods: {', '.join(dict.fromkeys(s.model_name for s in settings))}"
    draw_heatmaps(top, grids, title=f"{title}: needle in a haystack")
    methods = list(dict.fromkeys((s.model_name, s.method if s.method != "spec" else str(s.spec)) for s in settings))
    factors = list(dict.fromkeys(s.factor for s in settings if s.factor is not None))
    palette = colormaps["tab10"].colors + colormaps["Dark2"].colors
    styles = []
    for setting in settings:
        key = (setting.model_name, setting.method if setting.method != "spec" else str(setting.spec))
        style = FACTOR_STYLES[factors.index(setting.factor) % len(FACTOR_STYLES)] if setting.factor else "-"
        styles.append({"color": palette[methods.index(key) % len(palette)], "linestyle": style})
    axes = bottom.add_subplot()
    note = draw_curves(axes, curves, [s.name for s in settings], log=True, styles=styles,
                       title="Perplexity versus context length (dashed black: trained length)")  # fmt: skip
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", ncol=1 if len(settings) <= 12 else 2)
    if note:
        bottom.supxlabel(textwrap.fill(note, width=150), x=0.01, ha="left", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata=figure_metadata(FIGURE_FILE, "rope-sweep"))
    return buffer.getvalue()


# -- the command -------------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rope-sweep`` sub-command."""
    parser = subparsers.add_parser(
        "rope-sweep",
        help="RoPE extension methods side by side: NIAH grid and perplexity curve per setting, one figure, one table",
        description=__doc__.splitlines()[0],
        epilog="Methods: " + ", ".join(METHODS) + ". A rerun of the same command resumes.",
    )
    parser.add_argument("--model", action="append", required=True, metavar="PATH_OR_ID",
                        help="a model folder or Hub id (repeat for several; at most 16 settings in all)")  # fmt: skip
    parser.add_argument("--methods", default=None, metavar="LIST",
                        help=f"methods, comma-separated (default {DEFAULT_METHODS} unless --rope-scaling is given)")  # fmt: skip
    parser.add_argument("--factors", default="2,4,8", metavar="LIST",
                        help="multiples of the trained length each method reaches (default 2,4,8)")  # fmt: skip
    parser.add_argument("--rope-scaling", action="append", default=[], metavar="SPEC",
                        help="a setting as any spec of the one parser (yarn:4, longrope:FILE.json:1024, a JSON object); "
                             "repeatable")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for everything (created if absent)")
    parser.add_argument("--lengths", metavar="LIST",
                        help="NIAH context lengths (default: the trained length times 1 and each factor)")  # fmt: skip
    parser.add_argument(
        "--depths", default="0,25,50,75,100", metavar="LIST", help="needle depths in %% (default 0,25,50,75,100)"
    )
    parser.add_argument("--needles", type=int_arg(1), default=3, metavar="N", help="needles per cell (default 3)")
    parser.add_argument("--gen-tokens", type=int_arg(1, 256), default=8, metavar="N",
                        help="answer tokens (diffusion: one block, one token a step; default 8)")  # fmt: skip
    parser.add_argument("--cache", default="none", choices=("none", "prefix", "dual"),
                        help="diffusion models' NIAH decoding: exact (none, default) or Fast-dLLM's prefix / dual cache "
                             "(several times faster on long prompts)")  # fmt: skip
    parser.add_argument("--ppl-max-length", type=int_arg(1), metavar="N",
                        help="tokens of the perplexity curve (default: the longest NIAH length)")  # fmt: skip
    parser.add_argument("--chunk", type=int_arg(1), default=64, metavar="N", help="tokens per curve point (default 64)")
    parser.add_argument("--mc", type=int_arg(1), default=4, metavar="N",
                        help="Monte-Carlo samples per chunk, diffusion (default 4)")  # fmt: skip
    parser.add_argument("--text", metavar="FILE", help="the perplexity text (default: the package's report)")
    parser.add_argument(
        "--batch-size", type=int_arg(1), default=1, metavar="N", help="NIAH prompts a batch (default 1)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", metavar="NAME", help="float32 (default), bfloat16, float16")
    parser.add_argument(
        "--seed", type=int_arg(0, MAX_SEED), default=0, metavar="N", help="grid, mask and sampling seed"
    )
    parser.add_argument("--title", help="title of the figure and the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let a model outside the families, or its tokenizer, run its repo's own code")  # fmt: skip
    parser.set_defaults(func=run_command)


def options_from(args: argparse.Namespace, settings: Sequence[SweepSetting]) -> SweepOptions:
    """The shared options, checked (lengths default to the first model's trained length times 1 and each factor)."""
    from longllada.perplexity.loading import DTYPES, check_device

    factors = _number_list(args.factors, "--factors", integer=False, minimum=1)
    trained = settings[0].trained_length if settings else 1
    lengths = (_number_list(args.lengths, "--lengths", integer=True, minimum=1) if args.lengths
               else sorted({int(round(f * trained)) for f in [1, *factors]}))  # fmt: skip
    depths = _number_list(args.depths, "--depths", integer=False, minimum=0, maximum=100)  # percentages
    if args.dtype not in DTYPES or args.dtype == "auto":
        raise ValueError(f"--dtype {args.dtype!r} is not allowed; allowed: float32, bfloat16, float16")
    ppl_max = args.ppl_max_length or max(lengths)
    if ppl_max < args.chunk:
        raise ValueError(f"--ppl-max-length {ppl_max} is shorter than one chunk (--chunk {args.chunk})")
    return SweepOptions(
        lengths=sorted(lengths), depths=sorted(depths), needles=args.needles, gen_tokens=args.gen_tokens, cache=args.cache,
        ppl_max_length=ppl_max, chunk=args.chunk, mc=args.mc, batch_size=args.batch_size,
        device=check_device(None if args.device == "auto" else args.device), dtype=args.dtype, seed=args.seed,
        text=args.text, title=args.title, progress=not args.no_progress,
    )  # fmt: skip


def command_line(args: argparse.Namespace) -> list[str]:
    """The command line of ``args`` as a user would type it (every option given or defaulted), for the record."""
    command = ["longllada", "rope-sweep"]
    for model in args.model:
        command += ["--model", model]
    for spec in args.rope_scaling:
        command += ["--rope-scaling", spec]
    for flag in ("methods", "factors", "out", "lengths", "depths", "needles", "gen_tokens", "cache", "ppl_max_length",
                 "chunk", "mc", "text", "batch_size", "device", "dtype", "seed", "title"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            command += [f"--{flag.replace('_', '-')}", str(value)]
    if getattr(args, "trust_remote_code", False):
        command.append("--trust-remote-code")
    return command


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada rope-sweep``."""
    from longllada.perplexity.loading import check_model_source

    for model in args.model:
        check_model_source(model)
    if len(set(args.model)) != len(args.model):
        raise ValueError(f"--model {args.model}: a model is given twice; allowed: each once")
    methods = (
        parse_methods(args.methods) if args.methods else ([] if args.rope_scaling else parse_methods(DEFAULT_METHODS))
    )
    factors = _number_list(args.factors, "--factors", integer=False, minimum=1)
    out = Path(args.out).expanduser()
    settings = build_settings(args.model, methods, factors, args.rope_scaling, out, args.trust_remote_code)
    options = options_from(args, settings)
    try:
        record = run_sweep(settings, options, out, command_line(args))
    except SweepFailed as failed:
        return failed.code
    for row in record["table"]:
        print(f"{row['setting']}: NIAH inside {row['niah_inside']}, past {row['niah_past']}; "
              f"ppl inside {row['ppl_inside']}, past {row['ppl_past']}")  # fmt: skip
    print(f"{len(settings)} settings -> {out / FIGURE_FILE}, {out / TABLE_FILES[0]}, {out / TABLE_FILES[1]}")
    return 0

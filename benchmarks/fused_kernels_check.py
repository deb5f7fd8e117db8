"""The fast path's fused Triton kernels (RMSNorm, RoPE, SwiGLU product) against its torch code, on one GPU.

``fast_longllada.py`` runs three Triton kernels on CUDA bf16/fp16 tensors when triton imports; ``LONGLLADA_TRITON=0``
(or ``fast_longllada.USE_TRITON = False``, which this script toggles) keeps the torch code. For an LLaDA-8B-shaped
model with random bf16 weights, made on the GPU, at each length (default 4096 and 32768 tokens) this records:

(a) each kernel alone against the fast path's torch code and the plain function (``modeling_longllada``) on the
    block's tensors ([1, L, 4096] norm input, the [1, 32, L, 128] query view, [1, L, 12288] gate and up): median
    seconds (CUDA events, ``--repeats`` after warm-up) and the share of outputs equal bit for bit to the plain
    function's, with the largest distance in units in the last place (ulp);
(b) one forward pass (LM head on the last 32 positions) with the kernels on, off, and on the plain path: median
    seconds, max |logit difference| and argmax agreement of "on" against "off" and against plain;
(c) a kernel profile of one pass with the kernels on and off: device seconds by family (attention, gemm,
    other), as ``generate_bench.py --profile`` records it;
(d) ``model.generate`` of 32 tokens (block 32, steps 32) on a 4096-token prompt, exact and ``cache="prefix"``
    (whose cached steps replay a CUDA graph), kernels on and off: seconds and token agreement.

    python benchmarks/fused_kernels_check.py --out benchmarks/results/fused_kernels_h200.json

``--tiny`` runs a small random model on the CPU (where the kernels are simply off) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fast_path_check import random_model  # noqa: E402
from generate_bench import GEN, kernel_profile, random_tokens  # noqa: E402

from modeling_longllada import fast_longllada as fast  # noqa: E402
from modeling_longllada.modeling_longllada import LongLLaDARMSNorm, apply_rotary, rotary_cos_sin  # noqa: E402

PROMPT = 4096  # the generate runs' prompt length (d)


@contextmanager
def kernels(enabled: bool):
    """The fused kernels on or off for the duration (the module switch that ``LONGLLADA_TRITON`` sets)."""
    before = fast.USE_TRITON
    fast.USE_TRITON = enabled
    try:
        yield
    finally:
        fast.USE_TRITON = before


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, repeats: int, setup=None, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup``; ``setup()`` runs before each call,
    outside the timed span (CUDA events on a GPU, the host clock on the CPU)."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units in the last place between two bf16/fp16 tensors of one shape (int64)."""

    def ordered(t: torch.Tensor) -> torch.Tensor:
        bits = t.view(torch.int16).long()
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    return (ordered(a) - ordered(b)).abs()


def agreement(ours: torch.Tensor | None, plain: torch.Tensor) -> dict:
    if ours is None:
        return {"triton_ran": False}
    distance = ulps(ours, plain)
    return {
        "triton_ran": True,
        "equal_fraction": float((distance == 0).float().mean()),
        "differing": int((distance > 0).sum()),
        "max_ulp": int(distance.max()),
    }


# -- (a) each kernel alone ---------------------------------------------------------------------------------------


def rms_norm_row(config, device: torch.device, generator: torch.Generator, length: int, repeats: int) -> dict:
    """RMSNorm of the residual stream [1, L, d_model], weight near 1."""
    x = (torch.randn(1, length, config.d_model, generator=generator, device=device) * 2).to(torch.bfloat16)
    norm = LongLLaDARMSNorm(config.d_model, config.rms_norm_eps).to(device=device, dtype=torch.bfloat16)
    norm.weight.copy_(torch.rand(config.d_model, generator=generator, device=device) + 0.5)
    with kernels(True):
        ours = fast.triton_rms_norm(x, norm.weight, norm.eps)
        row = agreement(ours, norm(x))
        if ours is not None:
            row["triton_s"] = median_seconds(lambda: fast.triton_rms_norm(x, norm.weight, norm.eps), device, repeats)
    row["plain_s"] = median_seconds(lambda: norm(x), device, repeats)
    with kernels(False):
        row["torch_s"] = median_seconds(lambda: fast.rms_norm(norm, x), device, repeats)
    return row


def rotary_row(config, device: torch.device, generator: torch.Generator, length: int, repeats: int) -> dict:
    """RoPE of the queries: the transposed view of [1, L, H, D] that the block makes."""
    shape = (1, length, config.n_heads, config.head_dim)
    q = (torch.randn(*shape, generator=generator, device=device) * 3).to(torch.bfloat16).transpose(1, 2)
    cos, sin = rotary_cos_sin(torch.arange(length, device=device)[None], config.head_dim, config.rope_theta, device)
    with kernels(True):
        ours = fast.triton_rotary(q, cos, sin)
        row = agreement(ours, apply_rotary(q, cos, sin))
        if ours is not None:
            row["triton_s"] = median_seconds(lambda: fast.triton_rotary(q, cos, sin), device, repeats)
    row["plain_s"] = median_seconds(lambda: apply_rotary(q, cos, sin), device, repeats)
    with kernels(False):
        row["torch_s"] = median_seconds(lambda: fast.rotary(q, cos, sin), device, repeats)
    return row


def swiglu_row(config, device: torch.device, generator: torch.Generator, length: int, repeats: int) -> dict:
    """silu(gate) * up on [1, L, mlp]; the in-place forms restart from the same gate each call (an untimed copy)."""
    shape = (1, length, config.intermediate_size)
    gate = (torch.randn(*shape, generator=generator, device=device) * 4).to(torch.bfloat16)
    up = torch.randn(*shape, generator=generator, device=device).to(torch.bfloat16)
    work = gate.clone()

    def restore():
        work.copy_(gate)

    with kernels(True):
        ran = fast.triton_swiglu_(work, up)
        row = agreement(work if ran else None, F.silu(gate) * up)
        if ran:
            row["triton_s"] = median_seconds(lambda: fast.triton_swiglu_(work, up), device, repeats, restore)
    row["plain_s"] = median_seconds(lambda: F.silu(gate) * up, device, repeats)
    row["torch_s"] = median_seconds(lambda: F.silu(work, inplace=True).mul_(up), device, repeats, restore)
    return row


def kernel_rows(config, device: torch.device, length: int, repeats: int) -> dict:
    """Per kernel: seconds of the plain function, the fast path's torch code and the Triton kernel, and how the
    kernel's outputs compare with the plain function's."""
    generator = torch.Generator(device=device).manual_seed(length)
    with torch.no_grad():
        return {
            row.__name__.removesuffix("_row"): row(config, device, generator, length, repeats)
            for row in (rms_norm_row, rotary_row, swiglu_row)
        }


# -- (b) a forward pass, (c) its profile ---------------------------------------------------------------------------


def forward_rows(model, device: torch.device, length: int, repeats: int) -> dict:
    ids = random_tokens(model.config, (1, length), length, device)
    ids[:, -GEN:] = model.config.mask_token_id
    logits, row = {}, {}
    settings = {"on": (True, True), "off": (True, False), "plain": (False, False)}
    with torch.no_grad():
        for name, (fast_path, triton_on) in settings.items():
            model.set_fast_path(fast_path)
            with kernels(triton_on):
                logits[name] = model(ids, logits_to_keep=GEN).logits.float()
                row[f"forward_s_{name}"] = median_seconds(
                    lambda: model(ids, logits_to_keep=GEN), device, repeats, warmup=0
                )
    model.set_fast_path(None)
    for other in ("off", "plain"):
        row[f"max_abs_diff_on_vs_{other}"] = float((logits["on"] - logits[other]).abs().max())
        row[f"argmax_agreement_on_vs_{other}"] = float(
            (logits["on"].argmax(-1) == logits[other].argmax(-1)).float().mean()
        )
    return row


def profile_rows(model, device: torch.device, length: int) -> dict:
    out = {}
    for name, triton_on in (("on", True), ("off", False)):
        with kernels(triton_on):
            profile = kernel_profile(model, device, length - GEN)
        out[name] = {"seconds_by_family": profile["seconds_by_family"], "top_kernels": profile["top_kernels"][:8]}
    return out


# -- (d) generate --------------------------------------------------------------------------------------------------


class Warnings(logging.Handler):
    """Collects the sampler's warnings (a failed CUDA graph capture says so there)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:200])


def generate_rows(model, device: torch.device, prompt_len: int) -> dict:
    prompt = random_tokens(model.config, (1, prompt_len), 11, device)
    modes = {"exact": {}, "prefix": {"cache": "prefix"}}
    caught = Warnings()
    watched = [logging.getLogger(name) for name in ("modeling_longllada.generation_longllada", fast.__name__)]
    for log in watched:
        log.addHandler(caught)

    def run(settings):
        sync(device)
        t0 = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=GEN, block_length=GEN, steps=GEN, **settings)
        sync(device)
        return out[:, prompt_len:], time.perf_counter() - t0

    row: dict = {"prompt_length": prompt_len}
    try:
        with kernels(True):  # compile the cached step's kernel signatures before anything is timed
            run(modes["prefix"])
        for mode, settings in modes.items():
            tokens = {}
            for name, triton_on in (("off", False), ("on", True)):
                with kernels(triton_on):
                    tokens[name], row[f"{mode}_s_{name}"] = run(settings)
            n = min(tokens["on"].shape[1], tokens["off"].shape[1])  # an early EOS may end one run sooner
            row[f"{mode}_token_agreement"] = float((tokens["on"][:, :n] == tokens["off"][:, :n]).float().mean())
            row[f"{mode}_tokens_identical"] = bool(torch.equal(tokens["on"], tokens["off"]))
    finally:
        for log in watched:
            log.removeHandler(caught)
    row["warnings"] = caught.messages
    return row


# -- report --------------------------------------------------------------------------------------------------------


def lengths_arg(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lengths={text!r} is not allowed; allowed: comma-separated integers"
        ) from None
    if not values or any(v < 2 * GEN for v in values):
        raise argparse.ArgumentTypeError(f"--lengths={text!r} is not allowed; allowed: integers >= {2 * GEN}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: an integer >= 1")
    return value


def table(record: dict) -> str:
    lines = []
    for row in record["rows"]:
        n = row["length"]
        for name, k in row["kernels"].items():
            triton_s = f"{k['triton_s'] * 1e3:8.3f}" if "triton_s" in k else "     n/a"
            equal = f"equal {k['equal_fraction']:.6f} max {k['max_ulp']} ulp" if k["triton_ran"] else "not run"
            lines.append(
                f"{n:>6} {name:<9} plain {k['plain_s'] * 1e3:8.3f} ms  torch {k['torch_s'] * 1e3:8.3f} ms  "
                f"triton {triton_s} ms  {equal}"
            )
        f = row["forward"]
        lines.append(
            f"{n:>6} forward   on {f['forward_s_on']:.3f} s  off {f['forward_s_off']:.3f} s  plain "
            f"{f['forward_s_plain']:.3f} s  max|Δlogit| on/off {f['max_abs_diff_on_vs_off']:.3g}  argmax on/off "
            f"{f['argmax_agreement_on_vs_off']:.4f}"
        )
        for name, p in row.get("profile", {}).items():
            fam = p["seconds_by_family"]
            lines.append(
                f"{n:>6} profile {name:<3} attention {fam['attention']:.3f} s  gemm {fam['gemm']:.3f} s  "
                f"other {fam['other']:.3f} s"
            )
    g = record.get("generate")
    if g:
        for mode in ("exact", "prefix"):
            lines.append(
                f"{g['prompt_length']:>6} generate {mode:<6} on {g[f'{mode}_s_on']:.2f} s  off {g[f'{mode}_s_off']:.2f} s  "
                f"tokens agree {g[f'{mode}_token_agreement']:.4f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=lengths_arg, default=None, help="comma-separated lengths (4096,32768)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls per kernel (median)")
    parser.add_argument("--forward-repeats", type=positive_int, default=3, help="timed forward passes per setting")
    parser.add_argument("--tiny", action="store_true", help="a small random model on the CPU, to check the script")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists():
        try:
            ours = json.loads(args.out.read_text(encoding="utf-8")).get("script") == "fused_kernels_check"
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            parser.error(f"--out={str(args.out)!r} exists and was not written by this script; refusing to overwrite it")

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    lengths = args.lengths or ([128, 256] if args.tiny else [4096, 32768])
    start = time.perf_counter()
    model = random_model("llada", args.tiny, device, torch.bfloat16)
    record: dict = {
        "script": "fused_kernels_check",
        "model": "random llada" + (" tiny" if args.tiny else " (LLaDA-8B shape)"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "triton": getattr(fast.triton, "__version__", None),
        "kernels_available": fast.triton is not None,
        "rows": [],
    }
    for length in lengths:
        row = {
            "length": length,
            "kernels": kernel_rows(model.config, device, length, args.repeats),
            "forward": forward_rows(model, device, length, args.forward_repeats),
        }
        if device.type == "cuda":
            row["profile"] = profile_rows(model, device, length)
        record["rows"].append(row)
    record["generate"] = generate_rows(model, device, min(PROMPT, max(lengths)))
    record["triton_switched_off_after_a_failure"] = fast._triton_failed
    record["wall_s"] = time.perf_counter() - start
    print(table(record))
    print(f"total {record['wall_s']:.1f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

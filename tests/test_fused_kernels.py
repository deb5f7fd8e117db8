"""The fast path's fused Triton kernels (RMSNorm, RoPE, the SwiGLU product) against the plain torch functions.

The kernels run on CUDA only; here triton's interpreter (``TRITON_INTERPRET=1``, numpy on the CPU) runs them on CPU
tensors, in a subprocess, since triton reads that variable when the kernels are defined. RoPE and SwiGLU must
equal torch bit for bit; RMSNorm sums its squares in another order than torch, so a rare bf16 output may move by
one unit in the last place (ulp), and the count of such elements is reported. Under the interpreter SwiGLU uses
numpy's float32 exp instead of libdevice's expf (which the interpreter lacks) and torch's CPU silu its own
vectorised exp, so there it is held to one ulp, with the count reported; on the GPU the kernel calls the expf
torch's CUDA silu calls (``benchmarks/fused_kernels_check.py`` counts the differences there).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units in the last place between two bf16/fp16 tensors of the same shape (int64)."""

    def ordered(t: torch.Tensor) -> torch.Tensor:
        bits = t.view(torch.int16).long()
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)  # sign-magnitude -> a line through zero

    return (ordered(a) - ordered(b)).abs()


# -- what the subprocess runs ------------------------------------------------------------------------------------


def _child() -> dict:
    import torch.nn.functional as F

    from modeling_longllada import LongLLaDAConfig, LongLLaDAModelLM
    from modeling_longllada import fast_longllada as fast
    from modeling_longllada.modeling_longllada import (
        LongLLaDARMSNorm,
        _select_positions,
        apply_rotary,
        rotary_cos_sin,
    )

    assert fast.INTERPRET and fast.triton is not None
    fast.TRITON_DEVICE_TYPES = frozenset({"cuda", "cpu"})
    torch.manual_seed(0)
    report: dict = {"rotary": {}, "rms_norm": {}, "swiglu": {}}
    torch.set_grad_enabled(False)

    # RoPE: the block's q/k views ([B, L, H, D] transposed), per-row positions (left padding), a broadcast batch,
    # cos/sin cut to kept positions as the last layer does, D = 128 and 64, odd lengths, bf16 and fp16.
    def rotary_case(name, b, length, heads, d, dtype, cos_rows, keep=None, contiguous=False, into=False):
        x = (torch.randn(b, length, heads, d) * 3).to(dtype).transpose(1, 2)
        if contiguous:
            x = x.contiguous()
        positions = torch.arange(length + 7)[None] + torch.arange(cos_rows)[:, None] * 5
        cos, sin = rotary_cos_sin(positions, d, 10000.0, x.device)
        cos, sin = cos[..., :length, :], sin[..., :length, :]  # a view with a row stride, like a cut table
        if keep is not None:
            x = x[:, :, keep]
            cos, sin = (_select_positions(t[:, 0], keep)[:, None] for t in (cos, sin))
        buffer = None
        if into:  # a cache buffer [B, S, H, D] seen as [B, H, S, D], positions 3.. of it
            buffer = torch.zeros(x.shape[0], x.shape[2] + 5, x.shape[1], d, dtype=dtype).transpose(1, 2)
        out = fast.triton_rotary(x, cos, sin, None if buffer is None else buffer[:, :, 3 : 3 + x.shape[2]])
        assert out is not None, name
        expected = apply_rotary(x, cos, sin)
        report["rotary"][name] = {
            "equal": torch.equal(out, expected),
            "strides_like_torch": out.stride() == expected.stride() or buffer is not None,
            "elements": out.numel(),
        }
        if buffer is not None:  # written in place, and nothing else
            report["rotary"][name]["equal"] &= bool(out.data_ptr() == buffer[:, :, 3:].data_ptr())
            report["rotary"][name]["equal"] &= bool((buffer[:, :, :3] == 0).all() and (buffer[:, :, -2:] == 0).all())

    rotary_case("q view, B=2 per-row cos/sin, D=128, L=37", 2, 37, 4, 128, torch.bfloat16, cos_rows=2)
    rotary_case("k view, B=2 broadcast cos/sin, D=64, L=19", 2, 19, 2, 64, torch.bfloat16, cos_rows=1)
    rotary_case("kept positions 3:9 (cos/sin views), D=128", 2, 21, 4, 128, torch.bfloat16, 2, keep=slice(3, 9))
    rotary_case("contiguous [B, H, L, D], fp16, D=64, L=5", 1, 5, 3, 64, torch.float16, cos_rows=1, contiguous=True)
    rotary_case("into a cache buffer's slice, B=2, D=128, L=9", 2, 9, 4, 128, torch.bfloat16, cos_rows=2, into=True)

    # RMSNorm: LLaDA's 4096 and Dream's 3584 columns, no weight, a strided input, a row longer than one block.
    def norm_case(name, shape, dtype, weight=True, cut=None):
        x = (torch.randn(*shape) * 2 + 0.5).to(dtype)
        if cut is not None:
            x = x[:, cut]
        norm = LongLLaDARMSNorm(shape[-1], 1e-5, affine=weight).to(dtype)
        if weight:
            norm.weight.data = (torch.rand(shape[-1]) + 0.5).to(dtype)
        y = fast.triton_rms_norm(x, norm.weight, norm.eps)
        assert y is not None, name
        expected = norm(x)
        distance = ulps(y, expected)
        report["rms_norm"][name] = {
            "differing": int((distance > 0).sum()),
            "max_ulp": int(distance.max()),
            "elements": y.numel(),
            "shape_ok": y.shape == expected.shape and y.dtype == expected.dtype,
        }

    norm_case("[2, 37, 4096] bf16 weight", (2, 37, 4096), torch.bfloat16)
    norm_case("[3, 11, 3584] bf16 no weight", (3, 11, 3584), torch.bfloat16, weight=False)
    norm_case("[2, 9, 64] fp16 weight, positions 2:7 (strided)", (2, 9, 64), torch.float16, cut=slice(2, 7))
    norm_case("[1, 3, 20000] bf16 weight (two passes)", (1, 3, 20000), torch.bfloat16)

    # SwiGLU: silu(gate) * up in place into gate.
    def swiglu_case(name, shape, dtype):
        gate, up = (torch.randn(*shape) * 4).to(dtype), torch.randn(*shape).to(dtype)
        gate.view(-1)[:6] = torch.tensor([0.0, -0.0, 100.0, -100.0, 1e-30, -90.0], dtype=dtype)  # edges
        expected = F.silu(gate) * up
        assert fast.triton_swiglu_(gate, up), name
        distance = ulps(gate, expected)
        report["swiglu"][name] = {
            "differing": int((distance > 0).sum()),
            "max_ulp": int(distance.max()),
            "elements": gate.numel(),
        }

    swiglu_case("[2, 37, 1000] bf16", (2, 37, 1000), torch.bfloat16)
    swiglu_case("[3, 7, 333] fp16", (3, 7, 333), torch.float16)

    # The halves of one fused gate-up product (rows at a stride of 2I): in place into the gate half only.
    fused = (torch.randn(2, 13, 2 * 300) * 4).to(torch.bfloat16)
    gate, up = fused[..., :300], fused[..., 300:]
    up_before = up.clone()
    expected = F.silu(gate) * up
    assert fast.triton_swiglu_(gate, up)
    distance = ulps(gate, expected)
    report["swiglu"]["halves of a fused [2, 13, 600] bf16"] = {
        "differing": int((distance > 0).sum()) + int(not torch.equal(up, up_before)),
        "max_ulp": int(distance.max()),
        "elements": gate.numel(),
    }

    # A tiny LongLLaDA in bf16: plain path against the fast path with the kernels, over a padded full pass, a pass
    # returning the cache, a cached step into the buffers and a pass keeping the last 3 logits.
    torch.manual_seed(0)
    config = LongLLaDAConfig(
        d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=96, vocab_size=100, embedding_size=128,
        max_sequence_length=64, rope_theta=10000.0, mask_token_id=126, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    model = LongLLaDAModelLM(config).to(torch.bfloat16).eval()
    for norm in (m for m in model.modules() if isinstance(m, LongLLaDARMSNorm)):
        norm.weight.data = (torch.rand(norm.weight.shape) + 0.5).to(torch.bfloat16)
    ids = torch.randint(2, 100, (2, 23))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    outputs = {}
    for enabled in (False, True):
        model.set_fast_path(enabled)
        fast._launched.clear()
        padded = model(ids, attention_mask=mask, position_ids=positions).logits
        full = model(ids, position_ids=positions, use_cache=True)
        buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
        step = model(ids[:, 8:12], attention_mask=mask, position_ids=positions[:, 8:12], past_key_values=buffers,
                     cache_slot=slice(8, 12), logits_to_keep=slice(1, 3)).logits  # fmt: skip
        kept = model(ids, logits_to_keep=3).logits
        outputs[enabled] = [padded, full.logits, step, kept]
        kernels = {key[0].fn.__name__ for key in fast._launched}
    report["model"] = {
        "kernels_run": sorted(kernels),
        "max_abs_diff": [float((a.float() - b.float()).abs().max()) for a, b in zip(outputs[False], outputs[True])],
        "max_abs_logit": max(float(a.float().abs().max()) for a in outputs[False]),
        "argmax_equal": all(torch.equal(a.argmax(-1), b.argmax(-1)) for a, b in zip(outputs[False], outputs[True])),
    }
    return report


# -- the tests -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    env.pop("LONGLLADA_TRITON", None)
    done = subprocess.run(
        [sys.executable, __file__], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the counts, for the record (pytest -s)
    return report


@needs_triton
def test_rotary_kernel_equals_apply_rotary_bit_for_bit(interpreted):
    for name, case in interpreted["rotary"].items():
        assert case["equal"] and case["strides_like_torch"], (name, case)


@needs_triton
def test_rms_norm_kernel_is_within_one_ulp_of_the_norm(interpreted):
    for name, case in interpreted["rms_norm"].items():
        assert case["shape_ok"] and case["max_ulp"] <= 1, (name, case)
        assert case["differing"] <= case["elements"] // 1000, (name, case)  # rare: the sum's last bit only


@needs_triton
def test_swiglu_kernel_is_silu_times_up(interpreted):
    for name, case in interpreted["swiglu"].items():
        assert case["max_ulp"] <= 1, (name, case)  # numpy's exp under the interpreter; see the module docstring
        assert case["differing"] <= case["elements"] // 1000, (name, case)


@needs_triton
def test_tiny_model_with_the_kernels_gives_the_plain_logits(interpreted):
    model = interpreted["model"]
    assert model["kernels_run"] == ["_rms_norm_kernel", "_rotary_kernel", "_swiglu_kernel"]
    assert model["argmax_equal"]
    # equal (measured), or within about one bf16 rounding of the largest logit where a rare one-ulp norm difference
    # moved a value
    assert max(model["max_abs_diff"]) <= 2**-8 * model["max_abs_logit"], model


def test_the_kernels_stay_off_on_the_cpu_with_autograd_or_in_float32():
    from modeling_longllada import fast_longllada as fast
    from modeling_longllada.modeling_longllada import rotary_cos_sin

    x = torch.randn(1, 2, 8, 16).to(torch.bfloat16)
    cos, sin = rotary_cos_sin(torch.arange(8)[None], 16, 10000.0, x.device)
    with torch.no_grad():
        assert fast.triton_rotary(x, cos, sin) is None  # a CPU tensor: torch's code
        assert fast.triton_rms_norm(x, None, 1e-5) is None
        assert not fast.triton_swiglu_(x.clone(), x)
    for device_types in (frozenset({"cpu"}), frozenset({"cuda"})):
        fast_types = fast.TRITON_DEVICE_TYPES
        fast.TRITON_DEVICE_TYPES = device_types
        try:
            assert fast.triton_rotary(x, cos, sin) is None  # autograd on
            with torch.no_grad():
                assert fast.triton_rotary(x.float(), cos, sin) is None  # float32
        finally:
            fast.TRITON_DEVICE_TYPES = fast_types


def test_without_triton_the_torch_code_runs():
    """Where triton cannot be imported (``sys.modules["triton"] = None`` makes every import of it fail, as on a
    machine without it), the module loads and the fast path runs torch's code."""
    code = (
        "import sys\n"
        "sys.modules['triton'] = None\n"
        "import torch\n"
        "from modeling_longllada import LongLLaDAConfig, LongLLaDAModelLM, fast_longllada as fast\n"
        "assert fast.triton is None\n"
        "model = LongLLaDAModelLM(LongLLaDAConfig(d_model=32, n_heads=2, n_kv_heads=2, n_layers=1, mlp_hidden_size=48,\n"
        "    vocab_size=64, embedding_size=64, mask_token_id=63, eos_token_id=1, pad_token_id=1)).to(torch.bfloat16)\n"
        "model.set_fast_path(True)\n"
        "with torch.no_grad():\n"
        "    print(model(torch.tensor([[3, 4, 5]])).logits.shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "torch.Size([1, 3, 64])" in done.stdout


def test_remote_code_does_not_require_triton():
    """transformers lists the packages a remote-code file needs (and refuses to load it without them); triton is
    optional, so it must not be among them (transformers 5 parses the file; 4.46 cuts try...except spans from its
    text, which the same check below reproduces)."""
    import re

    from transformers.dynamic_module_utils import get_imports

    path = REPO / "modeling_longllada" / "fast_longllada.py"
    assert "triton" not in get_imports(path)
    text = re.sub(r"\s*try\s*:.*?except.*?:", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    imports = re.findall(r"^\s*import\s+(\S+)\s*$", text, flags=re.MULTILINE)
    imports += re.findall(r"^\s*from\s+(\S+)\s+import", text, flags=re.MULTILINE)
    assert not [name for name in imports if name.split(".")[0] == "triton"], imports


def test_the_switch_reads_zero_or_one_and_refuses_anything_else(monkeypatch):
    from modeling_longllada import fast_longllada as fast

    for value, on in (("0", False), ("1", True)):
        monkeypatch.setenv("LONGLLADA_TRITON", value)
        assert fast._triton_switch() is on
    monkeypatch.setenv("LONGLLADA_TRITON", "yes")
    with pytest.raises(ValueError, match=r"LONGLLADA_TRITON='yes' is not allowed; allowed: '0' \(torch code\) or '1'"):
        fast._triton_switch()


if __name__ == "__main__":  # the subprocess: one JSON line on stdout
    sys.path.insert(0, str(REPO))
    print(json.dumps(_child()))

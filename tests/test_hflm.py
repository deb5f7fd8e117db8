"""lm-eval's own HF model class drives our generate(): a real HFLM, no stand-in."""

from __future__ import annotations

import pytest

lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")
from lm_eval.api.instance import Instance  # noqa: E402


def test_hflm_generate_until_returns_strings(tiny_model_dir):
    lm = lm_eval_hf.HFLM(pretrained=str(tiny_model_dir), trust_remote_code=True, batch_size=2, device="cpu")
    assert type(lm.model).__name__ == "LongLLaDAModelLM"
    contexts = ["The report says that", "A short prompt", "Question: what is the budget?\nAnswer:"]
    requests = [
        Instance(
            request_type="generate_until",
            doc={},
            arguments=(context, {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}),
            idx=i,
        )
        for i, context in enumerate(contexts)
    ]
    outputs = lm.generate_until(requests)
    assert len(outputs) == len(contexts)
    assert all(isinstance(text, str) for text in outputs)
    assert not any("<|mdm_mask|>" in text for text in outputs)

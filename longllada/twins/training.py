"""Training one twin: LLaDA's masked-diffusion loss or next-token loss, the learning-rate schedule, the cheap
answer probe logged during training, and the loop that saves the twin at the end.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from longllada.twins.data import Batch, DocumentBuilder, batch_stream, build_twin_tokenizer, report_text
from longllada.twins.models import build_model, save_twin
from longllada.twins.settings import AR_DIR_NAME, DIFFUSION_DIR_NAME, ROW_KINDS, TrainSettings

MASK_EPS = 1e-3  # LLaDA: p_mask = (1 - eps) t + eps, so that no row is left entirely unmasked in expectation


def diffusion_loss(model, batch: Batch, mask_id: int, generator) -> tuple[Any, dict[str, float]]:
    """LLaDA's masked-diffusion loss (see :mod:`longllada.twins`); also the per-kind losses for the log."""
    import torch
    import torch.nn.functional as F

    x, region = batch.input_ids, batch.loss_region
    b, length = x.shape
    t = torch.rand(b, device=x.device, generator=generator)
    p_mask = (1 - MASK_EPS) * t + MASK_EPS
    masked = (torch.rand(b, length, device=x.device, generator=generator) < p_mask[:, None]) & region
    noisy = torch.where(masked, torch.full_like(x, mask_id), x)
    rows, cols = masked.nonzero(as_tuple=True)
    logits = model(input_ids=noisy, logits_to_keep=None).logits
    token_ce = F.cross_entropy(logits[rows, cols].float(), x[rows, cols], reduction="none") / p_mask[rows]
    per_row = torch.zeros(b, device=x.device).index_add_(0, rows, token_ce) / region.sum(1).clamp_min(1)
    return per_row.mean(), _per_kind(per_row, batch.kinds)


def ar_loss(model, batch: Batch, eos_id: int, weighting: str = "row") -> tuple[Any, dict[str, float]]:
    """Next-token cross-entropy over the loss region (a token is scored when it is in the region; for SFT rows
    the answer and the first EOS), averaged over scored tokens; per-kind losses for the log."""
    import torch
    import torch.nn.functional as F

    x, region = batch.input_ids, batch.loss_region.clone()
    sft = torch.tensor([k == "sft" for k in batch.kinds], device=x.device)
    if sft.any():  # after the first EOS of an SFT response, the padding is not scored
        eos_seen = (x == eos_id) & region
        after_first = eos_seen.cumsum(1) > 1
        region = region & ~(after_first & sft[:, None])
    logits = model(input_ids=x).logits[:, :-1]
    targets, scored = x[:, 1:], region[:, 1:]
    token_ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    token_ce = token_ce.view_as(targets) * scored
    per_row = token_ce.sum(1) / scored.sum(1).clamp_min(1)
    if weighting == "row":  # each row counts the same: an SFT row's few answer tokens weigh as much as a report row
        return per_row.mean(), _per_kind(per_row, batch.kinds)
    return token_ce.sum() / scored.sum().clamp_min(1), _per_kind(per_row, batch.kinds)


def _per_kind(per_row, kinds: list[str]) -> dict[str, float]:
    values = per_row.detach().float().cpu().tolist()
    out: dict[str, float] = {}
    for kind in ROW_KINDS:
        chosen = [v for v, k in zip(values, kinds) if k == kind]
        if chosen:
            out[f"loss_{kind}"] = sum(chosen) / len(chosen)
    return out


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    floor = settings.min_lr_ratio
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# -- the answer probe during training (cheap) -----------------------------------------------------------------


def probe_accuracy(twin: str, model, probe: Batch, answers: list[list[int]], mask_id: int) -> float:
    """Share of held-out SFT rows whose whole answer is predicted right: diffusion, one step with the whole
    response masked (argmax per position); AR, teacher-forced argmax of each answer token."""
    import torch

    x, region = probe.input_ids, probe.loss_region
    with torch.no_grad():
        if twin == "diffusion":
            noisy = torch.where(region, torch.full_like(x, mask_id), x)
            pred = model(input_ids=noisy).logits.argmax(-1)
        else:
            pred = torch.cat([x[:, :1], model(input_ids=x).logits[:, :-1].argmax(-1)], dim=1)
    right = 0
    for i, answer in enumerate(answers):
        start = int(region[i].float().argmax())
        right += bool(torch.equal(pred[i, start : start + len(answer)].cpu(), torch.tensor(answer)))
    return right / len(answers)


def train_twin(twin: str, settings: TrainSettings, out_dir: Path, log_dir: Path, device: str) -> dict[str, Any]:
    """Train one twin, save it to ``out_dir``, log to ``log_dir/{twin}.jsonl``; returns the summary."""
    import torch

    settings.check()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    tokenizer = build_twin_tokenizer(settings.vocab_size)
    text = report_text()
    builder = DocumentBuilder.for_training(tokenizer, text, settings)
    probe_builder = DocumentBuilder(tokenizer, text, settings.train_length, random.Random(10_000 + settings.seed),
                                    held_out=True)  # fmt: skip
    probe = probe_builder.batch(64, {"sft": 1.0})
    probe_answers = []
    for i in range(probe.input_ids.shape[0]):
        response = probe.input_ids[i][probe.loss_region[i]].tolist()
        probe_answers.append(response[: response.index(tokenizer.eos_token_id)])
    probe = Batch(probe.input_ids.to(device), probe.loss_region.to(device), probe.kinds)

    model = build_model(twin, settings, tokenizer).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.startswith("cuda"),
    )  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    use_autocast = device.startswith("cuda")
    mask_id = tokenizer.mask_token_id
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{twin}.jsonl"
    log = log_path.open("w", encoding="utf-8")
    log.write(json.dumps({"event": "start", "twin": twin, "settings": asdict(settings), "parameters": n_params,
                          "device": device, "vocab": len(tokenizer)}) + "\n")  # fmt: skip
    print(f"[{twin}] {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}, device {device}", flush=True)

    batches = batch_stream(builder, settings)
    start = time.time()
    window: list[float] = []
    kinds_window: dict[str, list[float]] = {}
    step = -1
    stopped_early = False
    calibration = (10, 60)  # with a time budget, the step count is fixed from the speed of these steps
    while step + 1 < settings.steps:
        step += 1
        if settings.time_budget_s is not None and step in calibration:
            if step == calibration[0]:
                calibration_start = time.time()
            else:
                per_step = (time.time() - calibration_start) / (calibration[1] - calibration[0])
                settings.steps = max(step + 1, settings.warmup_steps + 1, int(settings.time_budget_s / per_step))
                log.write(json.dumps({"event": "steps_set", "step": step, "seconds_per_step": per_step,
                                      "steps": settings.steps}) + "\n")  # fmt: skip
                print(f"[{twin}] {per_step * 1000:.1f} ms/step: training {settings.steps} steps", flush=True)
        if settings.time_limit_s is not None and time.time() - start > settings.time_limit_s:
            stopped_early = True
            break
        batch = next(batches)
        batch = Batch(batch.input_ids.to(device, non_blocking=True), batch.loss_region.to(device), batch.kinds)
        lr = lr_at(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
            if twin == "diffusion":
                loss, parts = diffusion_loss(model, batch, mask_id, generator)
            else:
                loss, parts = ar_loss(model, batch, tokenizer.eos_token_id, settings.ar_loss_weighting)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        window.append(float(loss.detach()))
        for k, v in parts.items():
            kinds_window.setdefault(k, []).append(v)
        last = step == settings.steps - 1
        if (step + 1) % settings.log_every == 0 or last:
            record = {"step": step + 1, "loss": sum(window) / len(window), "lr": lr, "grad_norm": float(grad_norm),
                      "elapsed_s": round(time.time() - start, 2),
                      **{k: sum(v) / len(v) for k, v in kinds_window.items()}}  # fmt: skip
            if (step + 1) % settings.probe_every == 0 or last:
                model.eval()
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
                    record["probe_answer_acc"] = probe_accuracy(twin, model, probe, probe_answers, mask_id)
                print(f"[{twin}] step {step + 1} loss {record['loss']:.4f} probe {record['probe_answer_acc']:.2f} "
                      f"({record['elapsed_s']:.0f}s)", flush=True)  # fmt: skip
            log.write(json.dumps(record) + "\n")
            log.flush()
            window, kinds_window = [], {}
    steps_done = step + (0 if stopped_early else 1)
    train_seconds = time.time() - start
    log.write(json.dumps({"event": "end", "steps_done": steps_done, "stopped_early": stopped_early,
                          "train_seconds": round(train_seconds, 1)}) + "\n")  # fmt: skip
    log.close()
    folder = out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME)
    save_twin(twin, model, tokenizer, folder)
    return {"twin": twin, "parameters": n_params, "steps_done": steps_done, "stopped_early": stopped_early,
            "train_seconds": round(train_seconds, 1), "folder": str(folder), "settings": asdict(settings)}  # fmt: skip

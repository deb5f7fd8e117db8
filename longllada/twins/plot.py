"""``loss_curves.png``: the twins' training loss and answer probe, from their JSON-lines logs."""

from __future__ import annotations

import json
from pathlib import Path

from longllada.twins.settings import ROW_KINDS, TWINS


def plot_logs(log_dir: Path) -> Path | None:
    """``loss_curves.png`` from the twins' JSON-lines logs (training loss and the answer probe)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency; the GPU image may lack it
        return None
    fig, (ax_loss, ax_probe) = plt.subplots(1, 2, figsize=(11, 4))
    for twin in TWINS:
        path = log_dir / f"{twin}.jsonl"
        if not path.is_file():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines()]
        steps = [r["step"] for r in records if "loss" in r]
        ax_loss.plot(steps, [r["loss"] for r in records if "loss" in r], label=f"{twin}: total")
        for kind in ROW_KINDS:
            points = [(r["step"], r[f"loss_{kind}"]) for r in records if f"loss_{kind}" in r]
            if points:
                ax_loss.plot(*zip(*points), lw=0.7, alpha=0.6, label=f"{twin}: {kind} rows")
        probe = [(r["step"], r["probe_answer_acc"]) for r in records if "probe_answer_acc" in r]
        if probe:
            ax_probe.plot(*zip(*probe), marker=".", label=twin)
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="training loss (diffusion: 1/t-weighted bound)")
    ax_probe.set(xlabel="step", ylabel="answers exactly right", ylim=(0, 1.02),
                 title="held-out answer probe (one step / teacher-forced)")  # fmt: skip
    ax_loss.legend(fontsize=7)
    ax_probe.legend(fontsize=8)
    fig.tight_layout()
    out = log_dir / "loss_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

"""The shipped twins' model cards are what the card generator writes from the committed training logs and the
committed demo results: no stale figure, no word about how the project was developed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from longllada.twins.model_card import demo_section, write_model_card
from longllada.twins.settings import settings_from_dict

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "benchmarks" / "train_logs"
DEMO = json.loads((REPO / "docs" / "demo" / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("twin", "name"), [("diffusion", "tiny-llada-diffusion"), ("ar", "tiny-llama-ar")])
def test_shipped_card_is_the_generated_one(twin, name, tmp_path):
    summary = json.loads((LOGS / f"{twin}_summary.json").read_text(encoding="utf-8"))
    folder = tmp_path / name
    folder.mkdir()
    write_model_card(twin, folder, settings_from_dict(summary["settings"]), summary, summary["command"], LOGS,
                     summary.get("card_note", ""), DEMO)  # fmt: skip
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card == (REPO / "longllada" / "models" / name / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"\bissue\b|#\d|project's", card, re.I)


def test_demo_section_quotes_the_demo_at_the_trained_length():
    section = demo_section("diffusion", "tiny-llada-diffusion", DEMO)
    trained = DEMO["trained_length"]
    scores = [v for k, v in DEMO["niah"]["diffusion"].items() if int(k.split("@")[0]) == trained]
    assert f"{trained}: {sum(scores) / len(scores):.1f}" in section
    assert f"{sum(s == 100 for s in scores)} of {len(scores)} depths score 100" in section
    # another model's demo (or none) is not quoted
    assert (
        demo_section("diffusion", "my-retrained-twin", DEMO) == "" and demo_section("ar", "tiny-llama-ar", None) == ""
    )

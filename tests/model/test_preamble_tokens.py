"""The shipped modes measured in real idefics tokens, as the README's "Fidelity" section states them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.preamble import load_modes
from model.preamble_cost import TABLE_HEADER, left_for_conversation, preamble_costs
from model.types import ImagePart

README = Path(__file__).parents[2] / "README.md"
ROW = re.compile(r"^\| `(\w+)` \| (\d+) \| (\d+) \|$", re.MULTILINE)


@pytest.fixture(scope="module")
def costs(llama_loaded):
    return preamble_costs(llama_loaded.processor)


def _readme_table() -> dict[str, tuple[int, int]]:
    fidelity = README.read_text(encoding="utf-8").split("## Fidelity", 1)[1].split("\n## ", 1)[0]
    assert TABLE_HEADER in fidelity
    table = fidelity.split(TABLE_HEADER, 1)[1].split("\n\n", 1)[0]
    return {name: (int(cost), int(left)) for name, cost, left in ROW.findall(table)}


def test_the_readme_states_each_shipped_modes_real_token_count(costs):
    assert _readme_table() == {name: (cost, left_for_conversation(cost)) for name, cost in costs.items()}


def test_the_default_mode_leaves_at_least_1200_tokens_for_the_conversation(costs):
    assert left_for_conversation(costs["default"], max_new_tokens=512) >= 1200
    assert all(cost > 0 for cost in costs.values())


def test_the_default_mode_opens_the_dialogue_like_the_playground():
    default = load_modes(None)["default"]
    assert default.text.endswith("The conversation begins:")
    users = [turn for turn in default.examples if turn.role == "user"]
    assert any(not any(isinstance(part, ImagePart) for part in turn.parts) for turn in users)
    assert any(isinstance(part, ImagePart) for turn in users for part in turn.parts)

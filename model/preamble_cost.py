"""How many tokens each mode (preamble) costs every prompt, measured with a checkpoint's real tokenizer.

The context is 2048 tokens and MAX_NEW_TOKENS are kept for the reply, so what a mode costs is what the
conversation loses. The cost is measured, not estimated: the same one-question conversation is built with
and without the mode, and the difference counted. The README's "Fidelity" table comes from

    python -m model.preamble_cost DIR

with DIR a checkpoint with idefics's tokenizer (the real one, or `idefics-bot make-tiny-model DIR
--tokenizer tests/fixtures/llama-tokenizer/tokenizer.model`); a test keeps the table in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.preamble import load_modes
from model.prompt import PromptBuilder
from model.types import Conversation, Preamble, TextPart, Turn

CONTEXT_POSITIONS = 2048
DEFAULT_MAX_NEW_TOKENS = 512
TABLE_HEADER = (
    "| Mode | Tokens it adds to every prompt | Left for the conversation "
    f"(MAX_NEW_TOKENS={DEFAULT_MAX_NEW_TOKENS}) |\n|---|---|---|"
)


@dataclass(frozen=True)
class _TokenizerOnly:
    """What PromptBuilder needs of a LoadedModel to count tokens: the processor and the context size."""

    processor: Any
    max_positions: int = CONTEXT_POSITIONS


def preamble_costs(processor: Any, modes: dict[str, Preamble] | None = None) -> dict[str, int]:
    """Tokens each mode adds to a prompt, by mode name (the built-in modes unless `modes` is given)."""
    builder = PromptBuilder(_TokenizerOnly(processor), max_images=4)
    question = (Turn("user", (TextPart("What is in this picture?"),)),)
    bare = len(builder.build(Conversation(question), DEFAULT_MAX_NEW_TOKENS).input_ids)
    modes = load_modes(None) if modes is None else modes
    return {
        name: len(builder.build(Conversation(question, mode), DEFAULT_MAX_NEW_TOKENS).input_ids) - bare
        for name, mode in sorted(modes.items())
    }


def left_for_conversation(cost: int, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> int:
    return CONTEXT_POSITIONS - max_new_tokens - cost


def main(argv: list[str] | None = None) -> None:
    """Print the README's table for the checkpoint (hub id or directory) given."""
    import argparse

    from transformers import AutoProcessor

    from model.tokenization import SERVED_FORMAT_OPTIONS

    parser = argparse.ArgumentParser(description="Measure each mode's cost in real tokens.")
    parser.add_argument("model_id", help="a checkpoint directory or hub id with idefics's tokenizer")
    args = parser.parse_args(argv)
    processor = AutoProcessor.from_pretrained(args.model_id, **SERVED_FORMAT_OPTIONS)
    print(TABLE_HEADER)
    for name, cost in preamble_costs(processor).items():
        print(f"| `{name}` | {cost} | {left_for_conversation(cost)} |")


if __name__ == "__main__":
    main()

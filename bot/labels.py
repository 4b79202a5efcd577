"""Parsing the label list of /classify: untrusted text from a person, checked before the model sees it.

Labels are separated by commas (or new lines). A list is refused, with the reason in words, when it
has fewer than two labels, more than MAX_LABELS, a label longer than MAX_LABEL_CHARS, or the same
label twice (letter case ignored). The labels stay plain text: the prompt builder keeps them literal.
"""

from __future__ import annotations

import re

MIN_LABELS = 2
MAX_LABELS = 20
MAX_LABEL_CHARS = 50


class LabelListError(ValueError):
    """The label list cannot be used; the message says why, for the person who sent it."""


def parse_labels(text: str) -> tuple[str, ...]:
    """The labels in `text`, in the order given; raises LabelListError for a list we can't classify by."""
    labels = [" ".join(part.split()) for part in re.split(r"[,\n]", text)]
    labels = [label for label in labels if label]
    if not labels:
        raise LabelListError("no labels were given")
    if len(labels) < MIN_LABELS:
        raise LabelListError(f"only one label was given ({labels[0]!r}); give at least {MIN_LABELS}")
    if len(labels) > MAX_LABELS:
        raise LabelListError(f"{len(labels)} labels were given; the most I can compare is {MAX_LABELS}")
    for label in labels:
        if len(label) > MAX_LABEL_CHARS:
            raise LabelListError(
                f"the label {label[:20]!r}… is {len(label)} characters long; keep each under "
                f"{MAX_LABEL_CHARS + 1}"
            )
    seen: set[str] = set()
    for label in labels:
        if label.casefold() in seen:
            raise LabelListError(f"the label {label!r} is given twice")
        seen.add(label.casefold())
    return tuple(labels)

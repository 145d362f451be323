"""Hard negative captions for CLIP: the same caption with one word swapped within its group.

NegCLIP (Yuksekgonul et al., "When and why vision-language models behave like
bags-of-words, and what to do about it?", ICLR 2023) shows that contrastive training on
image-caption pairs alone lets a CLIP ignore attributes, relations and order, and that adding,
for each caption, a perturbed copy as an extra negative makes it attend to them. Here the
perturbation is a word swap inside a user-given group of mutually exclusive words
(``[circle, square, triangle]``, ``[left, right]``, ``[two, three]``): "a red circle on the
left" may become "a red square on the left" or "a red circle on the right".

A group must not hold synonyms (``circle`` and ``disk``): a swap between them would make a
true caption a negative. Words match whole (``star`` not inside ``stars``) and in any case; a
word without ASCII letters or digits (Chinese) matches anywhere in the text, as Chinese has
no spaces. The swap is fixed by an integer ``draw`` (a hash of seed, epoch and row key), so
it is the same on any process layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ASCII_WORD = re.compile(r"[A-Za-z0-9]")


def _pattern(word: str) -> str:
    escaped = re.escape(word)
    if _ASCII_WORD.search(word):  # a whole word: not part of a longer ASCII word
        return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
    return escaped


class WordSwapper:
    """Makes a hard negative of a caption by swapping one word within its group."""

    def __init__(self, groups: Sequence[Sequence[str]]):
        self.groups: list[tuple[str, ...]] = []
        self.group_of: dict[str, int] = {}
        for words in groups:
            if isinstance(words, str):
                raise ValueError(f"hard_negatives: each group is a list of words, got {words!r}")
            group = tuple(dict.fromkeys(str(w).strip().lower() for w in words))
            if len(group) < 2 or any(not w for w in group):
                raise ValueError(
                    f"hard_negatives: a group needs at least two distinct non-empty words, "
                    f"got {list(words)}"
                )
            for word in group:
                if word in self.group_of:
                    raise ValueError(
                        f"hard_negatives: {word!r} is in two groups; a word may swap within "
                        "one group only"
                    )
                self.group_of[word] = len(self.groups)
            self.groups.append(group)
        words = sorted(self.group_of, key=len, reverse=True)  # longest first: "top left" > "top"
        self.pattern = (
            re.compile("|".join(_pattern(w) for w in words), re.IGNORECASE) if words else None
        )

    def __bool__(self) -> bool:
        return self.pattern is not None

    def negative(self, text: str, draw: int) -> str | None:
        """``text`` with one group word replaced by another of its group, or None when it has
        no group word. ``draw`` (a non-negative integer) picks the word and its replacement."""
        if self.pattern is None:
            return None
        matches = list(self.pattern.finditer(text))
        if not matches:
            return None
        match = matches[draw % len(matches)]
        word = match.group(0)
        group = self.groups[self.group_of[word.lower()]]
        others = [w for w in group if w != word.lower()]
        new = others[(draw // len(matches)) % len(others)]
        if word[:1].isupper():
            new = new[:1].upper() + new[1:]
        return text[: match.start()] + new + text[match.end() :]

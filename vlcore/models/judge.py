"""The attribute judge: an independent CNN that reads the objects of a shapes-world image.

Text-to-image samples are reranked with CLIP; a gain measured by CLIP alone could be CLIP
liking its own picks. The judge is a separate model, trained on real synthetic images with the
generator's ground truth (:mod:`vlcore.synthetic.truth`), that says which objects an image
shows. Scenes place each object's centre in its own cell of a 3x3 grid, so the judge predicts,
per cell, whether it holds an object and that object's shape, colour and size::

    judge(images)  ->  JudgeOutput(presence B 9, shape B 9 6, color B 9 8, size B 9 2)   (logits)

Attribute accuracy of an image given the scene it should show (defined in ``docs/t2i.md``):
the judge's objects ``P`` (cells with presence > 0.5) are matched one-to-one to the scene's
objects ``T`` so that the number of agreeing attributes (shape, colour, size) is largest;

    accuracy = agreeing attributes / (attributes of T + 3 * max(0, |P| - |T|))

so 1.0 means exactly the right objects with the right attributes, a blank image scores 0, and
each extra object costs as much as a missing one. Position is not scored.

Public API (used by ``score_images``)::

    judge = load_judge("results/default/judge")
    scenes = scene_truth(experiment_or_seed, image_ids)      # list[list[dict]]
    acc = judge_scores(judge, images, scenes)                # images B 3 H W in [0, 1] -> B
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.io import atomic_path, read_json, write_json
from vlcore.synthetic.lexicon import COLORS, SHAPES, SIZES
from vlcore.synthetic.truth import scene_truth
from vlcore.train.checkpoint import load_weights, save_weights

__all__ = [
    "ATTRIBUTES",
    "AttributeJudge",
    "JudgeConfig",
    "JudgeOutput",
    "attribute_accuracy",
    "judge_loss",
    "judge_scores",
    "load_judge",
    "predict_objects",
    "save_judge",
    "scene_targets",
    "scene_truth",
]

RECORD_FILE = "judge.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
CELLS = 9  # the 3x3 grid of vlcore.synthetic.scene
ATTRIBUTES = ("shape", "color", "size")
VOCAB = {"shape": SHAPES, "color": COLORS, "size": SIZES}


@dataclass
class JudgeConfig:
    """The judge's architecture."""

    # side of the square input images (the shards' image_size)
    image_size: int = 64
    # widths of the conv stages; each halves the resolution
    channels: list[int] = field(default_factory=lambda: [32, 64, 96])
    # width of the hidden layer of the per-cell head
    hidden: int = 128
    # dropout before the heads
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(
                f"judge channels must be a non-empty list of widths, got {self.channels}"
            )
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(
                f"judge image_size {self.image_size} is not divisible by 2**{len(self.channels)}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JudgeConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown judge option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**dict(values))


@dataclass
class JudgeOutput:
    """Logits: presence ``B 9``, shape ``B 9 6``, color ``B 9 8``, size ``B 9 2`` (cells in
    row-major order of the 3x3 grid; vocabularies in :data:`VOCAB` order)."""

    presence: torch.Tensor
    shape: torch.Tensor
    color: torch.Tensor
    size: torch.Tensor


class AttributeJudge(nn.Module):
    """A fully convolutional trunk read at the 9 cell centres by one shared per-cell head.

    Trunk: per stage a stride-2 conv and a conv (each conv-BN-ReLU). Its feature map is
    sampled (bilinear) at the centre of every cell of the 3x3 grid, and the same small MLP
    turns each cell's feature vector into presence, shape, colour and size logits: what a
    shape looks like does not depend on where it is, so every cell trains the same head.
    """

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        prev = 3
        for ch in config.channels:
            layers += [
                nn.Conv2d(prev, ch, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            ]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.per_cell = 1 + len(SHAPES) + len(COLORS) + len(SIZES)
        self.head = nn.Sequential(
            nn.Linear(prev, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, self.per_cell),
        )
        # Cell centres in grid_sample's [-1, 1] coordinates (x, y), row-major.
        centres = [
            (2 * (c + 0.5) / 3 - 1, 2 * (r + 0.5) / 3 - 1) for r in range(3) for c in range(3)
        ]
        self.register_buffer(
            "centres", torch.tensor(centres).view(1, 1, CELLS, 2), persistent=False
        )

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(
                f"expected images of shape B 3 {size} {size}, got {tuple(images.shape)}"
            )
        fmap = self.features(images * 2.0 - 1.0)  # B C h w
        grid = self.centres.expand(fmap.shape[0], -1, -1, -1).to(fmap.dtype)
        cells = F.grid_sample(fmap, grid, mode="bilinear", align_corners=False)  # B C 1 9
        out = self.head(cells.squeeze(2).transpose(1, 2))  # B 9 per_cell
        cuts = list(itertools.accumulate([1, len(SHAPES), len(COLORS), len(SIZES)]))
        return JudgeOutput(
            presence=out[..., 0],
            shape=out[..., cuts[0] : cuts[1]],
            color=out[..., cuts[1] : cuts[2]],
            size=out[..., cuts[2] : cuts[3]],
        )

    def spec(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> AttributeJudge:
        if spec.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unknown judge format_version {spec.get('format_version')}")
        return cls(JudgeConfig.from_dict(spec["config"]))


# -- targets and loss -------------------------------------------------------------------------


def _cell_of(obj: Mapping[str, Any]) -> int:
    if "cell" in obj:
        row, col = obj["cell"]
    else:
        row, col = min(int(obj["y"] * 3), 2), min(int(obj["x"] * 3), 2)
    return 3 * int(row) + int(col)


def scene_targets(scenes: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, torch.Tensor]:
    """Per-cell training targets of full scenes: ``presence`` float ``B 9`` and long ``shape``,
    ``color``, ``size`` ``B 9`` (-100, ignored by the loss, in empty cells)."""
    b = len(scenes)
    targets = {"presence": torch.zeros(b, CELLS)}
    for name in ATTRIBUTES:
        targets[name] = torch.full((b, CELLS), -100, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for obj in scene:
            cell = _cell_of(obj)
            targets["presence"][i, cell] = 1.0
            for name in ATTRIBUTES:
                targets[name][i, cell] = VOCAB[name].index(obj[name])
    return targets


def hflip_targets(targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Targets of horizontally flipped images: the columns of the 3x3 grid swap (every shape
    of the shapes world looks the same mirrored, up to its small rotation jitter)."""
    order = torch.tensor([3 * r + (2 - c) for r in range(3) for c in range(3)])
    return {k: v[:, order] for k, v in targets.items()}


def judge_loss(out: JudgeOutput, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """BCE on presence plus cross-entropy of shape, colour and size in occupied cells."""
    loss = F.binary_cross_entropy_with_logits(out.presence.float(), targets["presence"].float())
    for name in ATTRIBUTES:
        logits = getattr(out, name).float()
        loss = loss + F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets[name].reshape(-1), ignore_index=-100
        )
    return loss


# -- reading images ---------------------------------------------------------------------------


@torch.no_grad()
def predict_objects(
    judge: AttributeJudge, images: torch.Tensor, batch_size: int = 256
) -> list[list[dict[str, Any]]]:
    """The objects the judge sees: per image ``[{shape, color, size, cell: [row, col]}]``."""
    judge.eval()
    device = next(judge.parameters()).device
    found: list[list[dict[str, Any]]] = []
    for start in range(0, images.shape[0], batch_size):
        out = judge(images[start : start + batch_size].to(device).float())
        present = (out.presence > 0).cpu()
        picks = {name: getattr(out, name).argmax(-1).cpu() for name in ATTRIBUTES}
        for i in range(present.shape[0]):
            found.append(
                [
                    {
                        **{name: VOCAB[name][int(picks[name][i, c])] for name in ATTRIBUTES},
                        "cell": [c // 3, c % 3],
                    }
                    for c in range(CELLS)
                    if present[i, c]
                ]
            )
    return found


def attribute_accuracy(
    predicted: Sequence[Mapping[str, Any]],
    truth: Sequence[Mapping[str, Any]],
    *,
    penalize_extra: bool = True,
) -> float:
    """Attribute accuracy of one image (see the module docstring and ``docs/t2i.md``).

    A truth object's attribute that is missing or None (a prompt that does not say the size)
    is not scored. ``penalize_extra=False`` drops the cost of extra predicted objects (for a
    truth that lists only some of the objects the image should show).
    """
    attrs = [[a for a in ATTRIBUTES if t.get(a) is not None] for t in truth]
    total = sum(len(a) for a in attrs)
    if penalize_extra:
        total += len(ATTRIBUTES) * max(0, len(predicted) - len(truth))
    if total == 0:
        return 1.0
    agree = [
        [sum(t[a] == p.get(a) for a in ta) for p in predicted]
        for t, ta in zip(truth, attrs, strict=True)
    ]
    best = 0
    n_t, n_p = len(truth), len(predicted)
    k = min(n_t, n_p)
    for rows in itertools.combinations(range(n_t), k):
        for cols in itertools.permutations(range(n_p), k):
            best = max(best, sum(agree[r][c] for r, c in zip(rows, cols, strict=True)))
    return best / total


def judge_scores(
    judge: AttributeJudge,
    images: torch.Tensor,
    scenes: Sequence[Sequence[Mapping[str, Any]]],
    *,
    penalize_extra: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """Attribute accuracy in [0, 1] of each image (``B 3 H W`` in [0, 1]) given the scene it
    should show (:func:`scene_truth`): a float tensor of shape ``B``."""
    if images.shape[0] != len(scenes):
        raise ValueError(f"got {images.shape[0]} images but {len(scenes)} scenes")
    predicted = predict_objects(judge, images, batch_size=batch_size)
    return torch.tensor(
        [
            attribute_accuracy(p, t, penalize_extra=penalize_extra)
            for p, t in zip(predicted, scenes, strict=True)
        ],
        dtype=torch.float32,
    )


# -- files ------------------------------------------------------------------------------------


def save_judge(
    judge: AttributeJudge, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None,
    *, weights: bool = True,
) -> None:  # fmt: skip
    """Write ``model.safetensors`` and ``judge.json`` (spec plus ``extra`` provenance)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_weights(judge, tmp)
    write_json({**dict(extra or {}), **judge.spec()}, folder / RECORD_FILE)


def load_judge(folder: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeJudge:
    """Rebuild a judge saved by :func:`save_judge`, in eval mode on ``device``."""
    folder = Path(folder)
    for name in (RECORD_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a judge folder: {name} is missing")
    judge = AttributeJudge.from_spec(read_json(folder / RECORD_FILE))
    load_weights(judge, folder / WEIGHTS_FILE)
    return judge.to(device).eval()

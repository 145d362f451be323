"""Features of a frozen image encoder, computed once per distinct image.

A frozen encoder in eval mode maps the same pixels to the same features, so a captioner that
reads one (clip_prefix with ``train_clip: false``, as ClipCap precomputes its CLIP embeddings)
need not run it again when an image comes back in a later epoch. Images are recognised by a
digest of their pixel values, so nothing about the data loader has to change, and an image
seen under another augmentation is simply a new image. The cache holds at most ``max_bytes``
of features (on the CPU); past that, features are computed as if there were no cache.

Shapes: images ``B 3 H W``; ``compute`` maps them to ``B ...`` features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


class FeatureCache:
    """Per-image features of a frozen encoder, keyed by a digest of the pixels."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"feature cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self._features: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    @staticmethod
    def digest(image: torch.Tensor) -> bytes:
        """A key for one image's exact pixel values (and their shape and dtype)."""
        data = image.detach().to("cpu").contiguous()
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{tuple(data.shape)}{data.dtype}".encode())
        h.update(data.flatten().view(torch.uint8).numpy().tobytes())
        return h.digest()

    def __call__(
        self, images: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``compute(images)``, running it only on the images not cached yet."""
        keys = [self.digest(image) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self._features]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh = {}
        if missing:  # the whole batch in the first epoch: no indexing copy then
            todo = images if len(missing) == len(keys) else images[missing]
            fresh = dict(zip(missing, compute(todo), strict=True))
        features = torch.stack(
            [
                fresh[i] if i in fresh else self._features[k].to(images.device)
                for i, k in enumerate(keys)
            ]
        )
        for i, feature in fresh.items():
            size = feature.numel() * feature.element_size()
            if self.used_bytes + size > self.max_bytes or keys[i] in self._features:
                continue
            self._features[keys[i]] = feature.detach().to("cpu", copy=True)
            self.used_bytes += size
        return features

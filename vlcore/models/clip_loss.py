"""CLIP's contrastive loss with NegCLIP hard negatives (see :mod:`vlcore.data.hard_negatives`).

open_clip's ``ClipLoss`` scores each image against the captions of the (global) batch and each
caption against its images. :class:`HardNegativeClipLoss` adds, on the image side only, as
NegCLIP does, one perturbed copy of every caption of the process as extra candidates: the
softmax of image ``i`` runs over all captions plus the local negatives, so a caption that
differs from the true one by a single attribute word has to score lower. Negatives marked
invalid (captions without a group word) are left out of every softmax. Under DDP each process
adds its own negatives only (its images' own perturbed captions are among them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip import ClipLoss


class HardNegativeClipLoss(ClipLoss):
    """``ClipLoss`` plus hard negatives on the image-to-text side."""

    def forward(  # type: ignore[override]
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        negative_features: torch.Tensor,
        negative_valid: torch.Tensor,
    ) -> torch.Tensor:
        """Features ``B D`` (L2-normalised), ``negative_features`` ``B D`` and
        ``negative_valid`` (bool ``B``): the symmetric InfoNCE loss with the negatives."""
        logits_per_image, logits_per_text = self.get_logits(
            image_features, text_features, logit_scale
        )
        negatives = logit_scale * image_features @ negative_features.T
        negatives = negatives.masked_fill(~negative_valid.bool()[None, :], float("-inf"))
        labels = self.get_ground_truth(image_features.device, logits_per_image.shape[0])
        image_loss = F.cross_entropy(torch.cat([logits_per_image, negatives], dim=1), labels)
        return (image_loss + F.cross_entropy(logits_per_text, labels)) / 2

"""The convolutional stem of vit_gpt2 and of CLIP's ViT tower: its two ways to downsample, its
two norms, and that a saved model rebuilds with the stem it was trained with (older vit_gpt2
records included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlcore.models.captioner_vit_gpt2 import ViTGPT2Captioner, ViTGPT2Config
from vlcore.models.conv_stem import ConvStem
from vlcore.models.generation import TextIds

TEXT = TextIds(vocab_size=50, bos=0, eos=1, pad=2)


def tiny_config(**stem) -> ViTGPT2Config:
    return ViTGPT2Config.from_dict(
        {
            "encoder": {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "intermediate_size": 64},
            "decoder": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_inner": 64,
                        "n_positions": 16},
            "conv_stem": [8, 16],
            **stem,
        }
    )  # fmt: skip


@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_stem_maps_images_to_the_patch_grid(downsample, norm):
    stem = ConvStem(3, 32, 8, [8, 16], downsample, norm)
    out = stem(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 32, 4, 4)
    convs = [m for m in stem if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2) if downsample == "stride" else (1, 1)] * 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in stem) == (3 if downsample == "maxpool" else 0)
    norm_type = nn.BatchNorm2d if norm == "batch" else nn.GroupNorm
    assert sum(isinstance(m, norm_type) for m in stem) == 3


def test_deeper_stem_adds_stride_one_blocks_per_stage():
    stem = ConvStem(3, 32, 8, [8, 16], "stride", "batch", depth=2)
    assert stem(torch.rand(2, 3, 32, 32)).shape == (2, 32, 4, 4)
    convs = [m for m in stem if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32]
    with pytest.raises(ValueError, match="conv_stem_depth must be at least 1"):
        ConvStem(3, 32, 8, [8, 16], depth=0)


def test_stride_stem_does_a_quarter_of_the_first_stage_work():
    x = torch.rand(2, 3, 64, 64)
    first = {d: ConvStem(3, 32, 8, [8, 16], d)[0] for d in ("maxpool", "stride")}
    # the same kernel, applied at every pixel or at every second pixel in each direction
    assert first["maxpool"](x).shape[-2:] == (64, 64)
    assert first["stride"](x).shape[-2:] == (32, 32)


@pytest.mark.parametrize(
    ("key", "value"), [("conv_stem_downsample", "avgpool"), ("conv_stem_norm", "layer")]
)
def test_unknown_stem_options_are_refused_with_the_allowed_ones(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be one of .*got '{value}'"):
        ViTGPT2Captioner.build(tiny_config(**{key: value}), TEXT, image_size=32)


def test_saved_architecture_rebuilds_with_its_stem():
    torch.manual_seed(0)
    model = ViTGPT2Captioner.build(
        tiny_config(conv_stem_downsample="stride", conv_stem_norm="batch", conv_stem_depth=2),
        TEXT,
        image_size=32,
    )
    model.train()
    model.encode(torch.rand(6, 3, 32, 32))  # moves the BatchNorm running statistics
    model.eval()
    spec = model.spec()
    assert (spec["conv_stem_downsample"], spec["conv_stem_norm"]) == ("stride", "batch")
    assert spec["conv_stem_depth"] == 2
    rebuilt = ViTGPT2Captioner.from_spec(spec, TEXT)
    rebuilt.load_state_dict(model.state_dict())  # same modules, running statistics included
    rebuilt.eval()
    images = torch.rand(2, 3, 32, 32)
    ids = torch.tensor([[0, 5, 6], [0, 7, 8]])
    args = (images, ids, torch.ones_like(ids), torch.tensor([0, 1]))
    with torch.no_grad():
        assert torch.equal(model.text_logits(*args), rebuilt.text_logits(*args))


def test_records_from_before_the_stem_options_rebuild_the_old_stem():
    model = ViTGPT2Captioner.build(tiny_config(), TEXT, image_size=32)
    spec = model.spec()
    del spec["conv_stem_downsample"], spec["conv_stem_norm"], spec["conv_stem_depth"]
    stem = ViTGPT2Captioner.from_spec(spec, TEXT).model.encoder.embeddings.patch_embeddings
    layers = list(stem.projection)
    assert sum(isinstance(m, nn.Conv2d) for m in layers) == 3  # one convolution per stage
    assert any(isinstance(m, nn.MaxPool2d) for m in layers)
    assert any(isinstance(m, nn.GroupNorm) for m in layers)


def test_clip_presets_choose_their_patch_projection(tmp_path):
    from vlcore.models.clip import build_clip, load_clip, save_clip
    from vlcore.text import TokenizerConfig, train_tokenizer

    tokenizer = tmp_path / "tokenizer"
    train_tokenizer(["a red circle", "a blue square on the left"] * 20,
                    TokenizerConfig(vocab_size=300), tokenizer)  # fmt: skip
    stem = build_clip("tiny_conv_stem", tokenizer_dir=tokenizer)
    assert isinstance(stem.model.visual.conv1, ConvStem)
    assert stem.model_cfg["vision_conv_stem"]["norm"] == "batch"
    plain = build_clip("tiny", tokenizer_dir=tokenizer)
    assert isinstance(plain.model.visual.conv1, nn.Conv2d)
    # the stem (and its BatchNorm statistics) travels with a saved folder
    stem.model.train()
    stem.model.visual(torch.rand(4, 3, 64, 64))
    stem.model.eval()
    again = load_clip(save_clip(stem, tmp_path / "clip"))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(stem.model.visual(images), again.model.visual(images))


def test_open_clip_stem_refuses_what_it_cannot_replace():
    from vlcore.models.conv_stem import add_open_clip_stem

    with pytest.raises(ValueError, match="open_clip's VisionTransformer"):
        add_open_clip_stem(nn.Linear(3, 3), {"channels": [8]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['width'\]"):
        add_open_clip_stem(nn.Linear(3, 3), {"width": 8})

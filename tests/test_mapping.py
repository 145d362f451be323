"""Prefix mapping networks: shapes, and what position embeddings add (vlcore.models.mapping)."""

import pytest
import torch

from vlcore.models.captioner_clip_prefix import ClipPrefixConfig, patch_grid
from vlcore.models.mapping import build_mapping, pool_token_grid


def _tokens(batch=2, n=9, dim=16):
    return torch.randn(batch, n, dim, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_output_shapes(kind):
    torch.manual_seed(0)
    pooled = build_mapping(kind, 16, 8, prefix_length=3, clip_length=4, num_heads=2)
    assert pooled(torch.randn(2, 16)).shape == (2, 3, 8)
    tokens = build_mapping(kind, 16, 8, prefix_length=3, tokens=True, num_heads=2)
    expected = (2, 9, 8) if kind == "mlp" else (2, 3, 8)  # mlp: one embedding per token
    assert tokens(_tokens()).shape == expected


def test_without_positions_token_order_is_invisible_and_with_them_it_is_not():
    torch.manual_seed(0)
    plain = build_mapping("transformer", 16, 8, prefix_length=3, tokens=True, num_heads=2)
    placed = build_mapping(
        "transformer", 16, 8, prefix_length=3, tokens=True, num_heads=2, n_positions=9
    )
    placed.load_state_dict(plain.state_dict(), strict=False)  # same weights but positions
    x = _tokens()
    shuffled = x[:, torch.randperm(9, generator=torch.Generator().manual_seed(1))]
    torch.testing.assert_close(plain(x), plain(shuffled))
    assert not torch.allclose(placed(x), placed(shuffled), atol=1e-4)


def test_positions_need_the_token_count_they_were_built_for():
    mapping = build_mapping("transformer", 16, 8, 3, tokens=True, num_heads=2, n_positions=9)
    with pytest.raises(ValueError, match="9 position embeddings but got 4 tokens"):
        mapping(_tokens(n=4))
    with pytest.raises(ValueError, match="transformer mapping only"):
        build_mapping("mlp", 16, 8, 3, tokens=True, n_positions=9)


def test_token_positions_setting_is_checked():
    assert ClipPrefixConfig(features="tokens", token_positions=True).token_positions
    with pytest.raises(ValueError, match="token_positions needs features 'tokens'"):
        ClipPrefixConfig(features="pooled", token_positions=True)
    with pytest.raises(ValueError, match="mapping 'transformer'"):
        ClipPrefixConfig(features="tokens", mapping="mlp", token_positions=True)


def test_patch_grid_of_a_tower():
    assert patch_grid({"vision_cfg": {"patch_size": 8}, "image_size": [64, 64]}) == 8
    assert patch_grid({"vision_cfg": {"patch_size": [8, 4]}, "image_size": [32, 16]}) == 4
    with pytest.raises(ValueError, match="square"):
        patch_grid({"vision_cfg": {"patch_size": 8}, "image_size": [64, 32]})


def test_token_grid_pools_each_block_of_patches_in_row_major_order():
    # a 4x4 grid of 1-d tokens numbered 0..15 row by row, pooled to 2x2
    tokens = torch.arange(16.0).view(1, 16, 1)
    pooled = pool_token_grid(tokens, 2).flatten().tolist()
    assert pooled == [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4,
                      (10 + 11 + 14 + 15) / 4]  # fmt: skip
    assert torch.equal(pool_token_grid(tokens, 4), tokens)
    with pytest.raises(ValueError, match="square grid"):
        pool_token_grid(torch.zeros(1, 10, 1), 2)


def test_token_grid_setting_is_checked():
    assert ClipPrefixConfig(features="tokens", token_grid=4).token_grid == 4
    with pytest.raises(ValueError, match="token_grid needs features 'tokens'"):
        ClipPrefixConfig(features="pooled", token_grid=4)
    with pytest.raises(ValueError, match="must be >= 0"):
        ClipPrefixConfig(features="tokens", token_grid=-1)

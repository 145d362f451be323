"""clip_prefix's prefix: packed teacher forcing (vlcore/models/packed_prefix.py), where an
image's texts in one sequence give the logits and gradients of one sequence per text; the
prefix's size against the decoder's positions; the tuned tower's learning rate."""

from __future__ import annotations

import pytest
import torch
from open_clip.model import _build_vision_tower

from tests.conftest import texts_about_images
from vlcore.models.captioner_clip_prefix import ClipPrefixCaptioner, ClipPrefixConfig
from vlcore.models.generation import TextIds, text_decoder
from vlcore.models.packed_prefix import pack_layout, packed_text_logits

TEXT = TextIds(vocab_size=40, bos=1, eos=2, pad=0)
DECODER = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64, "n_positions": 128,
           "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}  # fmt: skip
VISION = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16,
          "mlp_ratio": 2.0}  # fmt: skip


def tiny_captioner(**config) -> ClipPrefixCaptioner:
    torch.manual_seed(0)
    spec = {"embed_dim": 16, "vision_cfg": VISION, "quick_gelu": False, "image_size": [32, 32],
            "mean": [0.5] * 3, "std": [0.5] * 3, "source": "test"}  # fmt: skip
    visual = _build_vision_tower(16, VISION, False)
    settings = ClipPrefixConfig(prefix_length=4, features="tokens", train_clip=True, **config)
    return ClipPrefixCaptioner(visual, text_decoder(TEXT, DECODER), settings, spec)


def logits_and_grads(model: ClipPrefixCaptioner, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad()
    logits = model.text_logits(*inputs)
    keep = inputs[2].bool()
    (logits[keep].float() ** 2).mean().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logits.detach(), grads


def test_layout_puts_each_text_after_its_image_prefix():
    # image 0: texts 1 (2 tokens) and 3 (1 token); image 1: texts 0 (3 tokens) and 2 (1)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]])
    layout = pack_layout(mask, torch.tensor([1, 0, 1, 0]), n_prefix=2, n_images=2)
    assert layout.row.tolist() == [1, 1, 1, 0, 0, 1, 0]
    assert layout.column.tolist() == [2, 3, 4, 2, 3, 5, 4]
    # each text's positions restart after the prefix; image 0's last column is padding
    assert layout.positions.tolist() == [[0, 1, 2, 3, 2, 0], [0, 1, 2, 3, 4, 2]]
    allowed = layout.allowed[1, 0]
    assert allowed[5].tolist() == [True, True, False, False, False, True]  # text 2: prefix, itself
    assert allowed[4].tolist() == [True, True, True, True, True, False]  # text 0's last token
    assert allowed[1].tolist() == [True, True, False, False, False, False]  # prefix: causal


def test_layout_wants_right_padding():
    with pytest.raises(ValueError, match="padded on the right"):
        pack_layout(torch.tensor([[0, 1, 1]]), torch.tensor([0]), n_prefix=2, n_images=1)


@pytest.mark.parametrize("mapping", ["mlp", "transformer"])
def test_same_logits_and_gradients_as_one_pass_per_text(mapping):
    inputs = texts_about_images(32)
    packed = tiny_captioner(mapping=mapping)
    per_text = tiny_captioner(mapping=mapping, pack_texts=False)
    logits, grads = logits_and_grads(packed, inputs)
    expected_logits, expected_grads = logits_and_grads(per_text, inputs)
    keep = inputs[2].bool()
    torch.testing.assert_close(logits[keep], expected_logits[keep], rtol=1e-5, atol=1e-5)
    assert torch.equal(logits[~keep], torch.zeros_like(logits[~keep]))  # padding: no logits
    torch.testing.assert_close(grads, expected_grads, rtol=1e-4, atol=1e-6)


def test_eager_attention_gets_an_additive_mask():
    model = tiny_captioner()
    inputs = texts_about_images(32)
    expected = model.text_logits(*inputs)
    model.decoder.set_attn_implementation("eager")
    keep = inputs[2].bool()
    torch.testing.assert_close(model.text_logits(*inputs)[keep], expected[keep])


def test_loss_and_generation_unchanged_by_packing():
    inputs = texts_about_images(32)
    labels = inputs[1].masked_fill(inputs[2] == 0, -100)
    packed = tiny_captioner().eval()
    per_text = tiny_captioner(pack_texts=False).eval()
    torch.testing.assert_close(packed(*inputs, labels), per_text(*inputs, labels))
    prompt = torch.full((6, 1), TEXT.bos)
    images = inputs[0]
    assert torch.equal(
        packed.generate_tokens(images, prompt, max_new_tokens=5, do_sample=False),
        per_text.generate_tokens(images, prompt, max_new_tokens=5, do_sample=False),
    )


def test_decoder_directly_matches_prefixed_texts():
    decoder = text_decoder(TEXT, DECODER).eval()
    _, ids, mask, image_index = texts_about_images(32)
    prefix = torch.randn(6, 3, 32)
    packed = packed_text_logits(decoder, prefix, ids, mask, image_index)
    embeds = torch.cat([prefix[image_index], decoder.get_input_embeddings()(ids)], dim=1)
    full_mask = torch.cat([torch.ones(len(ids), 3, dtype=torch.long), mask], dim=1)
    expected = decoder(inputs_embeds=embeds, attention_mask=full_mask).logits[:, 3:]
    keep = mask.bool()
    torch.testing.assert_close(packed[keep], expected[keep], rtol=1e-5, atol=1e-5)


def test_prefix_size_and_positions_are_checked():
    assert tiny_captioner().prefix_size == 4  # the transformer mapping's prefix_length
    git = tiny_captioner(mapping="mlp")
    assert git.prefix_size == 16  # one per patch of the 4x4 grid
    git.check_text_length(128 - 16)
    with pytest.raises(ValueError, match=r"prefix has 16 embeddings .*n_positions: 129"):
        git.check_text_length(128 - 15)


def test_a_tuned_tower_can_learn_at_a_fraction_of_the_rate():
    assert tiny_captioner().learning_rate_scales() == {}
    model = tiny_captioner(clip_lr_scale=0.3)
    scales = model.learning_rate_scales()
    assert set(scales) == {id(p) for p in model.visual.parameters()}
    assert set(scales.values()) == {0.3}
    with pytest.raises(ValueError, match="clip_lr_scale must be > 0"):
        ClipPrefixConfig(clip_lr_scale=0.0, train_clip=True)
    with pytest.raises(ValueError, match="scales a tuned tower"):
        ClipPrefixConfig(clip_lr_scale=0.3, train_clip=False)


def test_answer_prompts_are_cut_as_training_cuts_questions_and_generation_checks_positions():
    from vlcore.models.generation import keep_prompt_end

    assert keep_prompt_end([1, 5, 6, 7, 8], 3) == [1, 7, 8]  # <bos> and the question's end
    assert keep_prompt_end([1, 5, 6], 3) == [1, 5, 6]
    assert keep_prompt_end([1, 5, 6], None) == [1, 5, 6]
    git = tiny_captioner(mapping="mlp").eval()  # 16 prefix embeddings, 128 positions
    images = torch.rand(2, 3, 32, 32)
    git.generate_tokens(images, torch.ones(2, 2, dtype=torch.long), max_new_tokens=110)
    with pytest.raises(ValueError, match="exceed the decoder's 128 positions"):
        git.generate_tokens(images, torch.ones(2, 2, dtype=torch.long), max_new_tokens=111)

"""Per-image cross-attention (vlcore/models/cross_attention.py): the texts of one image read
its encoder states once, and the logits and gradients are those of states repeated per text."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import texts_about_images
from vlcore.models.captioner_vit_gpt2 import ViTGPT2Captioner
from vlcore.models.cross_attention import PER_IMAGE, _slots, uses_per_image_attention
from vlcore.models.generation import TextIds
from vlcore.pipeline.captioner import load_preset

TINY = {
    "encoder": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 64},
    "decoder": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0},
}  # fmt: skip


def tiny_captioner() -> ViTGPT2Captioner:
    torch.manual_seed(0)
    config = load_preset("vit_gpt2", None, TINY)
    return ViTGPT2Captioner.build(config, TextIds(vocab_size=40, bos=1, eos=2, pad=0), 32)


def logits_and_grads(model: ViTGPT2Captioner, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad()
    logits = model.text_logits(*inputs)
    (logits.float() ** 2).mean().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logits.detach(), grads


def test_slots_put_each_image_texts_in_its_own_rows():
    image_index = torch.tensor([3, 0, 3, 1, 3, 0])
    slot, most = _slots(image_index)
    assert most == 3
    # image 0: rows 0, 1; image 1: row 3; image 3: rows 9, 10, 11, in the texts' order
    assert slot.tolist() == [9, 0, 10, 3, 11, 1]


def test_vit_gpt2_decoder_uses_it():
    model = tiny_captioner()
    assert uses_per_image_attention(model.model.decoder)
    assert model.model.decoder.config._attn_implementation == PER_IMAGE


def test_same_logits_and_gradients_as_states_per_text():
    inputs = texts_about_images(32)
    per_image = tiny_captioner()
    per_text = tiny_captioner()
    per_text.model.decoder.set_attn_implementation("sdpa")  # states repeated per text
    assert not uses_per_image_attention(per_text.model.decoder)

    logits, grads = logits_and_grads(per_image, inputs)
    expected_logits, expected_grads = logits_and_grads(per_text, inputs)
    assert torch.equal(logits, expected_logits)
    torch.testing.assert_close(grads, expected_grads, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_other_implementations_still_caption(implementation):
    model = tiny_captioner()
    inputs = texts_about_images(32)
    expected, _ = logits_and_grads(model, inputs)
    model.model.decoder.set_attn_implementation(implementation)
    logits, _ = logits_and_grads(model, inputs)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_layers_forget_the_batch_after_it():
    model = tiny_captioner()
    logits_and_grads(model, texts_about_images(32))
    layers = [block.crossattention for block in model.model.decoder.transformer.h]
    assert all(layer.vlcore_slots is None for layer in layers)


def test_generation_reads_states_per_sequence():
    """Generation hands the decoder states per (beam) sequence: plain sdpa, as before."""
    model = tiny_captioner().eval()
    images = texts_about_images(32)[0]
    prompt = torch.ones(len(images), 1, dtype=torch.long)
    kwargs = {"num_beams": 2, "max_new_tokens": 5, "do_sample": False}
    tokens = model.generate_tokens(images, prompt, **kwargs)
    model.model.decoder.set_attn_implementation("sdpa")
    assert torch.equal(model.generate_tokens(images, prompt, **kwargs), tokens)


def test_torch_compile_traces_the_states_per_text():
    """Traced by torch.compile the decoder gets the states per text (no data-dependent
    stacking to break the graph); eager, per image."""
    decoder = tiny_captioner().model.decoder

    def sign(x):
        return x + 1 if uses_per_image_attention(decoder) else x - 1

    x = torch.zeros(2)
    assert sign(x).tolist() == [1.0, 1.0]
    assert torch.compile(sign, backend="eager")(x).tolist() == [-1.0, -1.0]

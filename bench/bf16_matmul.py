"""Where does a bf16 matrix product beat fp32 on this CPU? One thread, side by side.

    .venv/bin/python bench/bf16_matmul.py
    .venv/bin/python bench/bf16_matmul.py --isa DEFAULT AVX512_CORE_BF16 AVX512_CORE AVX2
    .venv/bin/python bench/bf16_matmul.py --attention
    .venv/bin/python bench/bf16_matmul.py --muon --isa DEFAULT AVX2

Times the captioners' typical training products (a batch of 128 texts x 30 tokens through a
128-wide layer) in fp32 and bf16 and prints bf16 / fp32. Each ``--isa`` runs in a process of
its own with ``ONEDNN_MAX_CPU_ISA`` set, which caps the instructions oneDNN (PyTorch's bf16
products on the CPU) may use, so one AMX machine also shows what a CPU without AMX tiles
(``AVX512_CORE_BF16``), without bf16 instructions (``AVX512_CORE``) or with AVX2 only would
get. fp32 products go through another library and do not change with it. This is why
``precision: auto`` picks bf16 only on CPUs with AMX (``vlcore/train/runtime.py``).

``--attention`` times ``scaled_dot_product_attention`` forward and backward instead, at the
captioners' sizes (a decoder's causal self-attention; its cross-attention to 64 image tokens):
why attention stays fp32 under CPU autocast.

``--muon`` times one step of Muon's Newton-Schulz iterations (``optimizer: muon``) over the
weights Muon takes in the default vit_gpt2 (the conv stem's filters, a 2-layer ViT and a
3-layer GPT-2 with cross-attention, 128 wide): PyTorch runs them in bf16; the loop runs them
in fp32 where the training precision is fp32 (``vlcore/train/optimizers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(3840, 128, 256), (3840, 256, 128)]  # (rows, in, out)
# (texts, heads, query tokens, key tokens, head width, causal)
ATTENTION = [(128, 4, 30, 30, 32, True), (128, 4, 30, 64, 32, False)]


def product_ms(rows: int, inner: int, cols: int, dtype_name: str, repeats: int = 50) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(rows, inner).to(dtype), torch.randn(inner, cols).to(dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats * 1e3


def attention_ms(texts, heads, queries, keys, width, causal, dtype_name, repeats=10) -> float:
    """Forward and backward of one attention call, in milliseconds."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    q = torch.randn(texts, heads, queries, width).to(dtype).requires_grad_()
    k, v = (torch.randn(texts, heads, keys, width).to(dtype).requires_grad_() for _ in range(2))

    def step():
        F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def vit_gpt2_matrices() -> list:
    """The default vit_gpt2's weights that Muon steps (random values, real shapes): the
    config's overrides of the tiny preset, a 2000-token vocabulary."""
    from vlcore.models.captioner_vit_gpt2 import ViTGPT2Captioner
    from vlcore.models.generation import TextIds
    from vlcore.pipeline.captioner import load_preset
    from vlcore.train.optimizers import muon_split

    overrides = {
        "decoder": {"resid_pdrop": 0.0, "embd_pdrop": 0.0},
        "encoder": {"num_hidden_layers": 2},
    }
    config = load_preset("vit_gpt2", None, overrides)
    model = ViTGPT2Captioner.build(config, TextIds(2000, 0, 1, 2), 64)
    return [p.detach() for p in muon_split(model)[0]]


def newton_schulz_ms(dtype_name: str, repeats: int = 5) -> float:
    """One optimizer step's Newton-Schulz iterations over vit_gpt2's matrices, in ms: one
    stack per shape, as Muon runs them."""
    import torch

    from vlcore.train.optimizers import newton_schulz, stacks_of_one_shape

    dtype = getattr(torch, dtype_name)
    updates = [torch.randn(p.size(0), p[0].numel()) for p in vit_gpt2_matrices()]  # filters flat
    stacks = [stack for _, stack in stacks_of_one_shape(updates)]

    def step():
        for stack in stacks:
            newton_schulz(stack, (3.4445, -4.775, 2.0315), 5, 1e-7, dtype)

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def one_isa(attention: bool, muon: bool = False) -> None:
    """The child process: every shape in both precisions, as JSON."""
    import torch

    torch.set_num_threads(1)
    if muon:
        matrices = len(vit_gpt2_matrices())
        times = {name: newton_schulz_ms(name) for name in ("float32", "bfloat16")}
        print(json.dumps([{"shape": [matrices], **times}]))
        return
    shapes, timer = (ATTENTION, attention_ms) if attention else (SHAPES, product_ms)
    out = [{"shape": shape[:5], **{name: timer(*shape, name) for name in ("float32", "bfloat16")}}
           for shape in shapes]  # fmt: skip
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isa", nargs="+", default=["DEFAULT"], help="ONEDNN_MAX_CPU_ISA values")
    parser.add_argument(
        "--attention", action="store_true", help="time attention (forward + backward) instead"
    )
    parser.add_argument(
        "--muon", action="store_true", help="time Muon's Newton-Schulz step for vit_gpt2 instead"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attention and args.muon:
        parser.error("--attention or --muon, not both")
    if args.one:
        one_isa(args.attention, args.muon)
        return
    what = "texts x heads x q x k x width" if args.attention else "rows x in x out"
    what = "vit_gpt2's matrices" if args.muon else what
    print(f"oneDNN ISA cap | {what} | fp32 ms | bf16 ms | bf16 / fp32")
    for isa in args.isa:
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
        flags = [
            flag for flag, on in (("--attention", args.attention), ("--muon", args.muon)) if on
        ]
        command = [sys.executable, __file__, "--one", *flags]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"ONEDNN_MAX_CPU_ISA={isa} failed:\n{out.stderr[-2000:]}")
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            fp32, bf16 = row["float32"], row["bfloat16"]
            shape = "x".join(str(n) for n in row["shape"])
            print(f"{isa:16s} | {shape:15s} | {fp32:7.2f} | {bf16:7.2f} | {bf16 / fp32:6.2f}")


if __name__ == "__main__":
    main()

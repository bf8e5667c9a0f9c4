"""Does the gradient reach the input vectors right, for each way of loading the model's weights?

memtok optimises input vectors by gradient, so a loading whose layers give a wrong gradient with
respect to their inputs cannot make memories (it may still decode them). For float32, bfloat16,
and bitsandbytes' 8-bit and 4-bit (NF4) weights on the embedded model: the gradient of the next
token's loss at every position with respect to every input vector of a short sentence, compared
with float32's (cosine), and each one's slope along float32's gradient from autograd against a
central finite difference of the same loaded model (int8 also rounds its activations, so its
difference is the noisier).

    python bench/input_gradients.py --json docs/results/bench/input-gradients.json
    python bench/input_gradients.py --device cuda --random-weights --kinds float32,bfloat16,nf4   # a GPU

On CUDA the 4-bit weights compute in bfloat16 (memtok's `--model-dtype nf4`); on a CPU in float32.
The finite difference steps 1e-3 of the inputs' norm, or 4 of the loading's rounding steps if that
is more (bfloat16's spacing is 2^-8: a smaller step measures rounding). `--check` (make gpu-check)
exits 1 unless every loading's gradient has at most half its entries exactly zero, points the way
float32's does (cosine at least 0.5), and its slope has the finite difference's sign.
"""

from __future__ import annotations

import argparse
import logging

import torch
from common import report

from memtok.model.embedded import embedded_model_dir


def load(path: str, kind: str, device: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if kind == "int8":
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                    device_map=device)
    if kind == "nf4":
        compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map=device)
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, kind)).to(device)


def random_model_dir() -> str:
    """SmolLM2-135M's shape with random weights, as a folder bitsandbytes can quantise while loading."""
    import tempfile

    from common import random_lm

    lm = random_lm("smollm2-135m", "cpu")
    path = tempfile.mkdtemp(prefix="random-smollm2-")
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def input_gradient(model, ids: list[int]) -> torch.Tensor:
    """d(next-token loss summed over positions) / d(input vectors), [n, d] float32."""
    dev = model.get_input_embeddings().weight.device
    x = model.get_input_embeddings()(torch.tensor([ids], device=dev)).detach().float().requires_grad_(True)
    logits = model(inputs_embeds=x.to(model.get_input_embeddings().weight.dtype)).logits[0, :-1].float()
    torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:], device=dev), reduction="sum").backward()
    return x.grad[0]


def finite_difference(model, ids: list[int], grad: torch.Tensor, along: torch.Tensor) -> tuple[float, float]:
    """(autograd `grad`, central difference) of the model's loss along the direction `along`."""
    dev = model.get_input_embeddings().weight.device
    x = model.get_input_embeddings()(torch.tensor([ids], device=dev)).detach().float()
    dtype = model.get_input_embeddings().weight.dtype
    eps = max(1e-3, 4 * torch.finfo(dtype).eps if dtype.is_floating_point else 1e-3)
    d = (along / along.norm() * eps * x.norm())[None]

    def loss(v):
        logits = model(inputs_embeds=v.to(dtype)).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:], device=dev), reduction="sum")

    with torch.no_grad():
        return float((grad * d[0]).sum()), float((loss(x + d) - loss(x - d)) / 2)


def usable(row: dict) -> bool:
    """Mostly non-zero, pointing float32's way, and sloping as the finite difference does."""
    return row["zero"] <= 0.5 and row["cosine"] >= 0.5 and row["autograd"] * row["difference"] > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="float32,bfloat16,int8,nf4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random-weights", action="store_true", help="SmolLM2-135M's shape with random weights, "
                                                                  "saved to a temporary folder (no embedded model)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", action="store_true", help="exit 1 unless every gradient is usable (module docstring)")
    ap.add_argument("--model", default=None, help="a model folder (default: the embedded model's)")
    args = ap.parse_args()
    path = random_model_dir() if args.random_weights else args.model or embedded_model_dir()
    ids = [1, 504, 2365, 6354, 335, 253, 5482, 30]  # a short sentence's tokens: several positions, several matmuls
    if args.model:  # the same role in another vocabulary
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(path)("the cat sat on the mat.").input_ids
    truth = input_gradient(load(path, "float32", args.device).requires_grad_(False), ids).float()
    rows = []
    for kind in args.kinds.split(","):
        model = load(path, kind, args.device).requires_grad_(False)
        grad = input_gradient(model, ids)
        autograd, difference = finite_difference(model, ids, grad, truth)
        rows.append({"weights": kind, "cosine": round(float(torch.nn.functional.cosine_similarity(
            grad.flatten(), truth.flatten(), dim=0)), 4), "zero": round(float((grad == 0).float().mean()), 4),
            "autograd": round(autograd, 4), "difference": round(difference, 4)})
    report(rows, {"weights": lambda r: r["weights"], "cosine with float32's": lambda r: r["cosine"],
                  "share of exact zeros": lambda r: r["zero"],
                  "slope along float32's gradient: autograd": lambda r: r["autograd"],
                  "central difference": lambda r: r["difference"]}, args)
    bad = [r["weights"] for r in rows if not usable(r)]
    if args.check and bad:
        print(f"FAIL: no usable input gradient with {', '.join(bad)} weights")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

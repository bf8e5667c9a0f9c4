"""Does the gradient reach the input vectors right, for each way of loading the model's weights?

memtok optimises input vectors by gradient, so a loading whose layers give a wrong gradient with
respect to their inputs cannot make memories (it may still decode them). For float32, bfloat16,
and bitsandbytes' 8-bit and 4-bit (NF4) weights on the embedded model: the gradient of the next
token's loss at every position with respect to every input vector of a short sentence, compared
with float32's (cosine), and each one's slope along float32's gradient from autograd against a
central finite difference of the same loaded model (int8 also rounds its activations, so its
difference is the noisier).

    python bench/input_gradients.py --json docs/results/bench/input-gradients.json
"""

from __future__ import annotations

import argparse
import logging

import torch
from rows import report

from memtok.embedded import embedded_model_dir


def load(path: str, kind: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if kind == "int8":
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                    device_map="cpu")
    if kind == "nf4":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map="cpu")
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, kind))


def input_gradient(model, ids: list[int]) -> torch.Tensor:
    """d(next-token loss summed over positions) / d(input vectors), [n, d] float32."""
    x = model.get_input_embeddings()(torch.tensor([ids])).detach().float().requires_grad_(True)
    logits = model(inputs_embeds=x.to(model.get_input_embeddings().weight.dtype)).logits[0, :-1].float()
    torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").backward()
    return x.grad[0]


def finite_difference(model, ids: list[int], grad: torch.Tensor, along: torch.Tensor,
                      eps: float = 1e-3) -> tuple[float, float]:
    """(autograd `grad`, central difference) of the model's loss along the direction `along`."""
    x = model.get_input_embeddings()(torch.tensor([ids])).detach().float()
    d = (along / along.norm() * eps * x.norm())[None]
    dtype = model.get_input_embeddings().weight.dtype

    def loss(v):
        logits = model(inputs_embeds=v.to(dtype)).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum")

    with torch.no_grad():
        return float((grad * d[0]).sum()), float((loss(x + d) - loss(x - d)) / 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="float32,bfloat16,int8,nf4")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    path = embedded_model_dir()
    ids = [1, 504, 2365, 6354, 335, 253, 5482, 30]  # a short sentence's tokens: several positions, several matmuls
    truth = input_gradient(load(path, "float32").requires_grad_(False), ids)
    rows = []
    for kind in args.kinds.split(","):
        model = load(path, kind).requires_grad_(False)
        grad = input_gradient(model, ids)
        autograd, difference = finite_difference(model, ids, grad, truth)
        rows.append({"weights": kind, "cosine": round(float(torch.nn.functional.cosine_similarity(
            grad.flatten(), truth.flatten(), dim=0)), 4), "zero": round(float((grad == 0).float().mean()), 4),
            "autograd": round(autograd, 4), "difference": round(difference, 4)})
    report(rows, {"weights": lambda r: r["weights"], "cosine with float32's": lambda r: r["cosine"],
                  "share of exact zeros": lambda r: r["zero"],
                  "slope along float32's gradient: autograd": lambda r: r["autograd"],
                  "central difference": lambda r: r["difference"]}, args)


if __name__ == "__main__":
    main()

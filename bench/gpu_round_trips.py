"""Round trips on a GPU that the CPU suite cannot make, each encoding four texts and decoding them
back: a model in bfloat16 on CUDA, `--device auto`, and a model split as accelerate splits one over
several GPUs (its layers on the GPU, its final norm and head on the CPU, so the decoder's states
come back on another device than its inputs went in on); with `--quantised`, int8 and nf4 weights
(bitsandbytes). Exit 1 unless every text of every case is exact and decodes back. Part of
`make gpu-check`.

    python bench/gpu_round_trips.py --json gpu-check/round-trips.json
    python bench/gpu_round_trips.py --quantised --json gpu-check/round-trips-quantised.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch
from common import write_json

from memtok import MemoryCodec
from memtok.model.model import FrozenLM
from memtok.model.placement import fix_numerics
from memtok.testing import TEXTS, build_tiny_model_dir, build_tokenizer, fit


def round_trip(codec: MemoryCodec, name: str) -> dict:
    mems = codec.encode(TEXTS[:4], k=1, batch_size=4, max_steps=500)
    decoded = codec.decode(mems, check=False)
    row = {"case": name, "exact": sum(m.exact for m in mems), "texts": len(mems),
           "decoded_back": sum(d == t for d, t in zip(decoded, TEXTS)), "steps": [m.steps for m in mems]}
    print(row, flush=True)
    return row


def split_model(device: str) -> FrozenLM:
    """The tiny model, untied, its embeddings and layers on `device` and its final norm and head on
    the CPU through accelerate's dispatch, the CPU as the main device so that those run there (not
    offloaded to `device`): the several-GPU path on one GPU."""
    from accelerate import dispatch_model
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    fit(model, tok, TEXTS)
    layers = {"model.embed_tokens": device, "model.layers": device, "model.rotary_emb": device,
              "model.norm": "cpu", "lm_head": "cpu"}
    model = dispatch_model(model.requires_grad_(False).eval(), device_map=layers, main_device="cpu")
    fix_numerics()
    return FrozenLM(model, tok, "tiny, split over two devices")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quantised", action="store_true", help="int8 and nf4 weights (bitsandbytes) instead")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tiny = build_tiny_model_dir(tempfile.mkdtemp(prefix="tiny-"))
    if args.quantised:
        rows = [round_trip(MemoryCodec.from_pretrained(tiny, device=args.device, dtype=d), d) for d in ("int8", "nf4")]
    else:
        rows = [round_trip(MemoryCodec.from_pretrained(tiny, device=args.device, dtype="bfloat16"), "bfloat16"),
                round_trip(MemoryCodec.from_pretrained(tiny, device="auto"), "device auto"),
                round_trip(MemoryCodec(split_model(args.device)), "layers on the GPU, norm and head on the CPU")]
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0 if all(r["exact"] == r["decoded_back"] == r["texts"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

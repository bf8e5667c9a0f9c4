"""Where a model's weights go and what arithmetic they compute in: the device asked for (refused in
one line when torch cannot reach it), from_pretrained's placement and quantisation, and the matmul
numerics every memory is verified in.
"""

from __future__ import annotations

import logging

import torch

from ..errors import MemtokError
from .dtypes import MODEL_DTYPES, QUANTISED


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> None:
    """Refuse, in one line and before any weight is read, a device this torch cannot reach: a GPU
    asked for where none is visible would otherwise end in torch's own assertion mid-load."""
    if device in (None, "auto"):
        return
    try:
        where = torch.device(device)
    except RuntimeError:
        raise MemtokError(f"device {device!r} is none torch knows: give cpu, cuda, cuda:N or auto") from None
    if where.type != "cuda":
        return
    if not torch.cuda.is_available():
        built = "" if torch.version.cuda else " (built without CUDA)"
        raise MemtokError(f"device {device!r}: torch {torch.__version__}{built} sees no CUDA GPU here "
                          f"(give cpu, or leave the device out)")
    if where.index is not None and where.index >= (count := torch.cuda.device_count()):
        raise MemtokError(f"device {device!r}: there {'is' if count == 1 else 'are'} {count} CUDA GPU"
                          f"{'' if count == 1 else 's'} here, cuda:0 to cuda:{count - 1}")


TORCH_DTYPES = {name: getattr(torch, name) for name in MODEL_DTYPES}
# QUANTISED: weights held in few bits by bitsandbytes: `int8` (LLM.int8, the rest in float32: about a
# quarter of an fp32 model's memory) and `nf4` (4-bit NormalFloat with bfloat16 compute, the paper's own
# loading of Llama 3.1 8B). nf4 only on CUDA: bitsandbytes' 4-bit CPU path repacks its weights for a
# matrix-vector kernel with no autograd, and on the tiny test model the gradient reaching the input
# vectors was 0.0 where a finite difference gave 0.34 (docs/models.md)


def quantisation(dtype: str, device: str) -> dict:
    """from_pretrained's arguments for a bitsandbytes-quantised model, refused where it cannot work."""
    import importlib.util

    on_cuda = torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))
    if dtype == "nf4" and not on_cuda:
        raise MemtokError("dtype='nf4' needs a CUDA GPU: bitsandbytes' 4-bit path on a CPU gives no gradient "
                          "to the input vectors, so no memory could be optimised (use bfloat16 or int8 here)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MemtokError(f"dtype={dtype!r} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    # said at every pass: what int8 matrix products always do, not news
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if dtype == "nf4":
        return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                          bnb_4bit_compute_dtype=torch.bfloat16),
                "dtype": torch.bfloat16}
    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "dtype": torch.float32}


def fix_numerics() -> None:
    """Matrix products in the arithmetic a memory is verified in, whatever else the process set: no
    TF32 for float32, and no reduced-precision reductions in bfloat16 or float16 (cuBLAS allows both
    by default for 16-bit, and picks its kernels by shape, so a verdict could rest on rounding that
    a decode of another batch shape does not repeat). These are torch's process-wide switches, so
    what they were is said when this changes them: as a warning where the caller had changed torch's
    default, at info level where it was torch's own default (cuDNN's TF32, 16-bit reductions)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = {"float32 matmul precision": torch.get_float32_matmul_precision(), "TF32 matmul": matmul.allow_tf32,
              "TF32 cuDNN": cudnn.allow_tf32,
              "bf16 reduced-precision reductions": matmul.allow_bf16_reduced_precision_reduction,
              "fp16 reduced-precision reductions": matmul.allow_fp16_reduced_precision_reduction}
    torch.set_float32_matmul_precision("highest")
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    matmul.allow_bf16_reduced_precision_reduction = matmul.allow_fp16_reduced_precision_reduction = False
    for callers, names in ((True, tuple(before)[:2]), (False, tuple(before)[2:])):
        changed = [f"{name} {before[name]} -> {'highest' if name.startswith('float32') else False}"
                   for name in names if before[name] not in ("highest", False)]
        if changed:
            logging.getLogger("memtok").log(logging.WARNING if callers else logging.INFO,
                                            "memtok set torch's process-wide numerics for exact memories: %s",
                                            "; ".join(changed))


def placement_of(device: str | None, dtype: str) -> dict:
    """Where from_pretrained puts the weights: spread by accelerate (`auto`), straight onto one GPU
    (not through host memory: eight ranks would each hold a full fp32 copy there), or, on a CPU, loaded
    and left there."""
    device = device or default_device()
    if dtype in QUANTISED:
        return {"device_map": device}
    if device == "auto":
        return {"device_map": "auto"}
    return {"device_map": {"": device}} if device.startswith("cuda") else {}

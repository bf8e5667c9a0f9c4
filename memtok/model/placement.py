"""Where a model's weights go and what arithmetic they compute in: the device asked for (refused in
one line when torch cannot reach it), from_pretrained's placement and quantisation, and the matmul
numerics every memory is verified in.
"""

from __future__ import annotations

import torch

from ..errors import MemtokError


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


MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# weights held in few bits by bitsandbytes: `int8` (LLM.int8, the rest in float32: about a quarter of an
# fp32 model's memory) and `nf4` (4-bit NormalFloat with bfloat16 compute, the paper's own loading of
# Llama 3.1 8B). nf4 only on CUDA: bitsandbytes' 4-bit CPU path repacks its weights for a
# matrix-vector kernel with no autograd, and on the tiny test model the gradient reaching the input
# vectors was 0.0 where a finite difference gave 0.34 (docs/models.md)
QUANTISED = ("int8", "nf4")


def quantisation(dtype: str, device: str) -> dict:
    """from_pretrained's arguments for a bitsandbytes-quantised model, refused where it cannot work."""
    import importlib.util
    import logging

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
    a decode of another batch shape does not repeat)."""
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False


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

"""How fragile a memory is: noise on its vectors, rounding to each storage dtype, another prompt.

A memory is verified exact in one place: its vectors as saved, in its own prompt, in the numerics
it was made in. Each probe changes one of those and decodes again (greedy, from the vectors alone),
asking whether the text still comes back (its sha256): Gaussian noise of a given norm relative to
each vector's own, the vectors rounded to each storage dtype, and the vectors moved into a prompt
they were not made with. Beside each memory's verified margin, which says how near a flip it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from ..codec import MemoryCodec
from ..decode.greedy import verify
from ..errors import MemtokError
from ..format.header import sha256_text
from ..format.memory import Memory
from ..model.dtypes import DTYPES, framed
from ..model.layout import Layout
from ..model.precision import stored_form

NOISE = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3)
MOVED_TEMPLATE = "Recall: {memory}"


def run_memories(path: str | os.PathLike) -> Iterator[tuple[str, Memory]]:
    """(name, memory) of every memory of an eval folder (`memories/`) or a store."""
    path = Path(path)
    if (path / "memories").is_dir():
        for file in sorted((path / "memories").glob("*.safetensors")):
            yield file.stem, Memory.load(file)
    elif (path / "index.parquet").exists():
        from ..store import MemoryStore

        store = MemoryStore(path)
        for mem_id in store:
            if store.record(mem_id)["status"] != "failed":
                yield mem_id, store[mem_id]
    else:
        raise MemtokError(f"{path} is neither an eval folder (with memories/) nor a store (with index.parquet)")


def with_vectors(mem: Memory, vectors: torch.Tensor, dtype: str | None = None) -> Memory:
    return Memory(**{**mem.__dict__, "vectors": vectors.float().cpu(), "storage_dtype": dtype or mem.storage_dtype})


def noisy(codec: MemoryCodec, mem: Memory, level: float, seed: int) -> Memory:
    """Each input vector plus Gaussian noise of norm `level` times its own, as float32 input vectors."""
    inputs = codec.inputs(mem.vectors, mem.storage_dtype).float().cpu()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(inputs.shape, generator=gen)
    noise = noise / noise.norm(dim=1, keepdim=True) * inputs.norm(dim=1, keepdim=True) * level
    return with_vectors(mem, inputs + noise, "float32")


def rounded(codec: MemoryCodec, mem: Memory, dtype: str) -> Memory:
    """The memory's vectors as another storage dtype would save them (from its float32 input vectors)."""
    inputs = codec.inputs(mem.vectors, mem.storage_dtype).float()
    frame = codec.lm.frame if framed(dtype) else None
    return with_vectors(mem, stored_form(inputs, dtype, frame), dtype)


def moved(codec: MemoryCodec, mem: Memory, template: str) -> Memory:
    """The same vectors inside another prompt."""
    layout = Layout.build(codec.lm, template, mem.k, bos=bool(mem.prefix_ids))
    return Memory(**{**mem.__dict__, "template": template, "prefix_ids": list(layout.prefix_ids),
                     "infix_ids": list(layout.infix_ids)})


def still_exact(codec: MemoryCodec, targets: list[list[int]], variants: dict[str, Memory]) -> dict[str, bool]:
    """Whether each variant of a memory (same segments, same prompt) still decodes to `targets`: all
    variants verified together, each stopped at its first wrong choice (`memtok.verify`)."""
    names, kept = list(variants), dict.fromkeys(variants, True)
    layout = variants[names[0]].layout
    for s, seg_targets in enumerate(targets):
        inputs = [codec.inputs(variants[n].segment_vectors()[s][0], variants[n].storage_dtype) for n in names]
        for n, ok in zip(names, verify(codec.lm, layout, inputs, [seg_targets] * len(names))):
            kept[n] = kept[n] and ok
    return kept


def probe_memory(codec: MemoryCodec, name: str, mem: Memory, noise: tuple[float, ...] = NOISE,
                 template: str = MOVED_TEMPLATE, seed: int = 0) -> dict:
    """One memory's row: its margin, and whether its text comes back under each probe.

    The memory is decoded once as `memtok decode` does; each probe then only has to give the same
    ids, which a batched verification settles (a probe that breaks the text stops at its first
    wrong token)."""
    targets = codec.segment_ids(mem)  # `memtok decode`'s own computation
    exact = sha256_text(codec.text_of(targets)) == mem.text_sha256
    noisy_ = {f"noise {lv}": noisy(codec, mem, lv, seed) for lv in noise}
    rounded_ = {dt: rounded(codec, mem, dt) for dt in DTYPES if dt != mem.storage_dtype}
    kept = {**still_exact(codec, targets, {**noisy_, **rounded_}),
            "moved": still_exact(codec, targets, {"moved": moved(codec, mem, template)})["moved"]} if exact else {}
    return {"memory": name, "tokens": mem.n_tokens, "k": mem.k, "made_exact": mem.exact, "margin": mem.min_margin,
            "dtype": mem.storage_dtype, "exact": exact,
            "noise": {str(lv): kept.get(f"noise {lv}", False) for lv in noise},
            "rounded": {dt: kept.get(dt, False) for dt in rounded_}, "moved": kept.get("moved", False)}


def summarise_probe(rows: list[dict]) -> dict:
    """Exact share under each probe, over the memories that were exact as made, and the margins of
    those that kept their text under each noise level against those that lost it."""
    base = [r for r in rows if r["exact"]]
    def share(pick) -> float:
        return round(sum(map(pick, base)) / len(base), 4) if base else 0.0
    levels = list(rows[0]["noise"]) if rows else []
    return {"memories": len(rows), "exact_as_made": len(base),
            "noise": {lv: share(lambda r, lv=lv: r["noise"][lv]) for lv in levels},
            "rounded": {dt: share(lambda r, dt=dt: r["rounded"][dt]) for dt in (rows[0]["rounded"] if rows else [])},
            "moved": share(lambda r: r["moved"]),
            "margin_kept_vs_lost": {lv: [_median([r["margin"] for r in base if r["noise"][lv]]),
                                         _median([r["margin"] for r in base if not r["noise"][lv]])] for lv in levels}}


def _median(xs: list[float]) -> float | None:
    import statistics

    return round(statistics.median(xs), 3) if xs else None

"""A learned start: a small network that maps a text to the point its memory's optimisation starts from.

Every memory used to start from the same point (the mean input embedding), so the optimiser had to
travel the whole way for every text. The network reads what the frozen model itself makes of the
text (its hidden states at a few depths: `memtok.start.start_nets`) and proposes a vector near a solution; the
exact optimisation then goes on from there, so a text still ends exact or is reported not exact.
Decoding needs nothing of it: a memory records the start it came from only for the record.

The network is saved as a `.safetensors` file whose header names the model fingerprint it was
trained for, so it is only ever used with that model (`find_start`). This module is the learned
start's one home: its file, where it is looked for, and the name memories record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import MemtokError
from ..files import atomic_write
from ..model.model import FrozenLM
from ..settings.recipes import Init
from .start_nets import NETS, AttentionStart, PooledStart, make_net, token_states

START_FORMAT = "memtok-start"
SHIPPED = Path(__file__).resolve().parent.parent / "starts"  # the starts that ship with memtok


def propose(lm: FrozenLM, net: torch.nn.Module, layers: tuple[int, ...], texts: list[list[int]], k: int,
            codes: torch.Tensor | None) -> torch.Tensor:
    """[B, k, d]: what `net` (or a wrapper of it, in training) proposes for these texts, as vectors."""
    if codes is not None:  # unit spread per number, whatever the space's scale
        codes = codes.float() / codes.float().norm(dim=-1, keepdim=True).clamp_min(1e-12) * codes.shape[-1] ** 0.5
    start = lm.embedding_mean.float() + lm.embedding_std * net(*token_states(lm, texts, layers), k, codes)
    return start.to(lm.embedding_mean.dtype)


@dataclass
class LearnedStart:
    """A trained start network (`memtok.start.start_nets`) for one model, with what identifies it."""

    net: PooledStart | AttentionStart
    model_fingerprint: str
    name: str  # what a memory records as its start
    info: dict  # how it was trained and its held-out figures

    def vectors(self, lm: FrozenLM, texts: list[list[int]], k: int = 1, codes: torch.Tensor | None = None
                ) -> torch.Tensor:
        """[B, k, d] starting vectors for these texts (token ids without EOS), with a gradient to the net.
        `codes`: [B, r] their semantic codes (`memtok.start.semantic`), for a network that reads them."""
        return propose(lm, self.net, self.net.layers, texts, k, codes)

    def save(self, path: str | os.PathLike) -> None:
        meta = {"format": START_FORMAT, "model_fingerprint": self.model_fingerprint, "name": self.name,
                "kind": self.net.kind, "code_rank": str(self.net.code_rank),
                "layers": json.dumps(list(self.net.layers)), "width": str(self.net.width),
                "info": json.dumps(self.info)}
        tensors = {k: v.detach().half().contiguous().cpu() for k, v in self.net.state_dict().items()}
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LearnedStart:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != START_FORMAT:
                    raise MemtokError(f"{path} is not a memtok start file")
                tensors = {k: f.get_tensor(k).float() for k in f.keys()}
                layers = json.loads(meta["layers"])
                if not (isinstance(layers, list) and layers and all(type(i) is int and i >= 0 for i in layers)):
                    raise ValueError(f"its layers {meta['layers'][:40]!r} are not depths of a model")
                layers = tuple(layers)
                width, code_rank = int(meta["width"]), int(meta.get("code_rank", 0))
                hidden = tensors["down.weight"].shape[0]
                kind = meta.get("kind", PooledStart.kind)  # files from before there were two kinds
                if kind not in NETS:
                    raise ValueError(f"its network {kind[:40]!r} is none of {', '.join(NETS)}")
                if not 0 <= code_rank <= hidden:
                    raise ValueError(f"its code rank {code_rank} is not from 0 to {hidden}")
                net = make_net(kind, hidden, layers, width, code_rank)
                net.load_state_dict(tensors)
                return cls(net.requires_grad_(False).eval(), meta["model_fingerprint"], meta["name"],
                           json.loads(meta.get("info", "{}")))
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise MemtokError(f"cannot read start file {path}: {str(exc).splitlines()[0] if str(exc) else exc}") \
                from None


def start_dirs() -> list[Path]:
    """Where starts are looked for: `MEMTOK_STARTS` (a folder), then the ones shipped with memtok."""
    extra = os.environ.get("MEMTOK_STARTS")
    return ([Path(extra)] if extra else []) + [SHIPPED]


def start_path(lm: FrozenLM) -> Path | None:
    """The file of the learned start trained for exactly this model, if one is installed: a header
    read per file, which is all that choosing the default recipe needs."""
    for folder in start_dirs():
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
            except (SafetensorError, OSError):
                continue
            if meta.get("format") == START_FORMAT and meta.get("model_fingerprint") == lm.fingerprint:
                return path
    return None


def find_start(lm: FrozenLM) -> LearnedStart | None:
    """The learned start trained for exactly this model, loaded onto its device, if one is installed;
    None otherwise. An encode loads it once (`memtok.encode.resolved`)."""
    path = start_path(lm)
    if path is None:
        return None
    start = LearnedStart.load(path)
    depth, hidden = lm.layers, start.net.down.weight.shape[0]
    if max(start.net.layers) > depth or hidden != lm.hidden_size:
        raise MemtokError(f"start file {path} names {lm.name} but does not fit it (layers "
                          f"{list(start.net.layers)} of {depth}, width {hidden} of {lm.hidden_size})")
    start.net.to(lm.device)
    return start


# What a memory made with `Init.LEARNED` records when no start was installed for its model.
NO_START = "mean (no learned start installed)"


def start_name(init: Init, start: LearnedStart | None) -> str:
    """What a memory made with recipe init `init` started from: the learned start's name, or the init."""
    if init is Init.LEARNED:
        return start.name if start is not None else NO_START
    return init.value

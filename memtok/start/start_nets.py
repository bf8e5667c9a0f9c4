"""The learned start's networks: what the frozen model makes of a text -> the text's first memory vectors.

Both read the model's hidden states at a few depths (`feature_layers`) over the text's positions
and propose vectors in units of the embedding's spread around its mean; both end in a layer that
starts at zero, so an untrained network proposes the mean embedding and training can only move
away from it where that lowers the loss.

- `PooledStart` ("pooled-mlp"): the states mean-pooled at each depth, then an MLP. It cannot see
  word order; every vector of a memory is the same.
- `AttentionStart` ("attention"): one learned query per vector attends over every position's
  states (multi-head), so it can read which token comes where, and K vectors differ. It is also
  told the segment's semantic code, when there is one (`memtok.start.semantic`): the code then takes its
  subspace and the network proposes the rest of each vector around it (trained so, with random codes).
"""

from __future__ import annotations

import torch

from ..model.model import FrozenLM


def feature_layers(n_layers: int) -> tuple[int, ...]:
    """Hidden-state depths to read: the input embeddings, a third, two thirds and the last layer."""
    return tuple(sorted({0, n_layers // 3, (2 * n_layers) // 3, n_layers}))


def token_states(lm: FrozenLM, texts: list[list[int]], layers: tuple[int, ...]
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The model's hidden states of each text after its BOS, one [B, T, d] per depth in `layers`,
    and [B, T, 1] weights: 1 on a text's own positions, 0 on the BOS (the same for every text) and on
    padding. No gradient: the model stays frozen."""
    dev = lm.device
    rows = [[lm.bos_id, *t] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [lm.eos_id] * (width - len(r)) for r in rows], device=dev)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=dev)
    with torch.no_grad():
        states = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states
    keep = mask.clone()
    keep[:, 0] = 0
    return [states[i] for i in layers], keep[..., None].to(states[0].dtype)


def mean_pooled(states: list[torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
    """[B, len(states) * d]: each depth's states averaged over the text's positions, side by side."""
    return torch.cat([(s * keep).sum(1) / keep.sum(1).clamp_min(1) for s in states], dim=-1).float()


def text_features(lm: FrozenLM, texts: list[list[int]], layers: tuple[int, ...]) -> torch.Tensor:
    """[B, len(layers) * d]: the model's hidden states of each text, mean-pooled at each depth."""
    return mean_pooled(*token_states(lm, texts, layers))


class PooledStart(torch.nn.Module):
    """Mean-pooled states -> one start vector, repeated for each of K."""

    kind = "pooled-mlp"
    reads_codes = False

    def __init__(self, hidden: int, layers: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.layers, self.width, self.code_rank = tuple(layers), width, 0  # it reads no code
        self.norm = torch.nn.LayerNorm(hidden * len(layers))
        self.up = torch.nn.Linear(hidden * len(layers), width)
        self.down = torch.nn.Linear(width, hidden)
        torch.nn.init.zeros_(self.down.weight)
        torch.nn.init.zeros_(self.down.bias)

    def forward(self, states: list[torch.Tensor], keep: torch.Tensor, k: int,
                code: torch.Tensor | None = None) -> torch.Tensor:
        out = self.down(torch.nn.functional.gelu(self.up(self.norm(mean_pooled(states, keep)))))
        return out[:, None].expand(-1, k, -1)


class AttentionStart(torch.nn.Module):
    """K learned queries (and the code, when given) attend over the text's states at every depth."""

    kind = "attention"
    reads_codes = True
    QUERIES = 4  # vectors with a query of their own; a 5th vector reuses the 1st query, and so on
    HEADS = 8

    def __init__(self, hidden: int, layers: tuple[int, ...], width: int, code_rank: int = 0) -> None:
        super().__init__()
        self.layers, self.width, self.code_rank = tuple(layers), width, code_rank
        self.norm = torch.nn.LayerNorm(hidden * len(layers))
        self.up = torch.nn.Linear(hidden * len(layers), width)
        self.queries = torch.nn.Parameter(torch.randn(self.QUERIES, width) * width ** -0.5)
        self.code_in = torch.nn.Linear(code_rank, width, bias=False) if code_rank else None
        self.attend = torch.nn.MultiheadAttention(width, self.HEADS, batch_first=True)
        self.mlp_norm = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Linear(width, width)
        self.down = torch.nn.Linear(width, hidden)
        torch.nn.init.zeros_(self.down.weight)
        torch.nn.init.zeros_(self.down.bias)

    def forward(self, states: list[torch.Tensor], keep: torch.Tensor, k: int,
                code: torch.Tensor | None = None) -> torch.Tensor:
        """`code`: [B, code_rank] codes of unit spread per number, or None for a plain memory."""
        tokens = self.up(self.norm(torch.cat(states, dim=-1).float()))  # [B, T, w]
        query = self.queries[torch.arange(k) % self.QUERIES].expand(len(tokens), -1, -1)
        if code is not None and self.code_in is not None:
            query = query + self.code_in(code.float())[:, None]
        pooled, _ = self.attend(query, tokens, tokens, key_padding_mask=keep[..., 0] == 0, need_weights=False)
        pooled = pooled + query
        return self.down(torch.nn.functional.gelu(self.mlp(self.mlp_norm(pooled))))


NETS = {net.kind: net for net in (PooledStart, AttentionStart)}


def make_net(kind: str, hidden: int, layers: tuple[int, ...], width: int, code_rank: int) -> torch.nn.Module:
    """A start network of `kind`; a code rank for one that reads no code is refused (ValueError)."""
    if NETS[kind].reads_codes:
        return NETS[kind](hidden, layers, width, code_rank)
    if code_rank:
        raise ValueError(f"a {kind} start reads no code, yet a code rank of {code_rank} was given")
    return NETS[kind](hidden, layers, width)

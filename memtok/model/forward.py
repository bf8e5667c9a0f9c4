"""One right-padded forward pass of the frozen model over input vectors, judged at the targets.

What an encode's batch and the learned start's training both run: per target position its
cross-entropy, whether the argmax is right, and its margin (target logit - best other logit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch.nn.utils.rnn import pad_sequence

from .model import FrozenLM, on_device

HEAD_CHUNK = 256  # target positions whose logits [chunk, vocab] exist at once


def vocab_distance(lm: FrozenLM, vectors: torch.Tensor) -> torch.Tensor:
    """Mean over `vectors` [K, d] of the squared distance to the nearest token's input vector,
    relative to that vector's squared norm; a gradient reaches the vectors (the nearest row is chosen
    without one)."""
    rows = lm.vocabulary
    v = vectors.float()
    with torch.no_grad():
        nearest = ((v * v).sum(1, keepdim=True) + (rows * rows).sum(1)[None] - 2 * v @ rows.T).argmin(1)
    target = rows[nearest]
    return (((v - target) ** 2).sum(1) / (target * target).sum(1).clamp_min(1e-12)).mean()


def judge(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor,
          t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: cross-entropy, argmax right, margin (target logit - best other logit), on the
    device of `h`. A model spread over GPUs (`--device auto`) may keep its head on another GPU than
    its last layer: the logits come back there, and the targets go to them."""
    logits = head(h).float()
    t = t.to(logits.device)
    ce = F.cross_entropy(logits, t, reduction="none")
    with torch.no_grad():
        values, indices = logits.topk(2, dim=-1)
        best, runner_up = values.unbind(-1)
        right = indices.select(-1, 0) == t
        margin = logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.where(right, runner_up, best)
    return ce.to(h.device), right.to(h.device), margin.to(h.device)


def score_positions(lm: FrozenLM, x: torch.Tensor, mask: torch.Tensor, first: int, where: list[list[int]],
                    targets: list[int], bf16: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`judge` at each target position of the batch `x`: `where` holds each target's row and its
    input position counted from `first`, `targets` the ids, row by row, all on the host; they go to
    the device the last layer's states come back on, which for a model spread over GPUs
    (`--device auto`) is not the inputs'. The logits are made `HEAD_CHUNK` positions at a time and
    remade during the backward pass (checkpointing), so memory holds one chunk of [positions,
    vocabulary], not all."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        if lm.split_head is not None:
            decoder, head = lm.split_head
            states = decoder(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state[:, first:]
        else:
            head = torch.nn.Identity()
            states = lm.model(inputs_embeds=x, attention_mask=mask, use_cache=False).logits[:, first:]
        rows, columns = on_device(where, states.device)
        states, t = states[rows, columns], on_device(targets, states.device)
        if len(t) <= HEAD_CHUNK:  # one chunk: nothing to save by remaking its logits
            return judge(head, states, t)
        parts = [torch.utils.checkpoint.checkpoint(judge, head, states[c:c + HEAD_CHUNK], t[c:c + HEAD_CHUNK],
                                                   use_reentrant=False)
                 for c in range(0, len(t), HEAD_CHUNK)]
    return tuple(torch.cat(col) for col in zip(*parts))


def padded_pass(lm: FrozenLM, seqs: list[torch.Tensor], targets: list[list[int]], first: list[int],
                bf16: bool = False) -> tuple[torch.Tensor, ...]:
    """One right-padded forward pass over the input sequences `seqs` [L_j, d], row j's `targets[j]`
    (host ids) predicted from its input position `first[j]` on (right padding keeps every row's
    positions and attention as when alone). Returns `score_positions`' (cross-entropy, right, margin)
    at every target position, row by row, with the row of each position and each row's count of
    targets, all on the device the results came back on. Where the targets sit is known here, on
    the host, so nothing is read back from the device to find them."""
    dev = seqs[0].device
    x = pad_sequence(seqs, batch_first=True)
    mask = (torch.arange(x.shape[1], device=dev)[None] < on_device([len(s) for s in seqs], dev)[:, None]).long()
    lo = min(first)
    rows = [j for j, t in enumerate(targets) for _ in range(len(t))]
    columns = [f - lo + i for t, f in zip(targets, first) for i in range(len(t))]
    ce, right, margin = score_positions(lm, x, mask, lo, [rows, columns], [i for t in targets for i in t], bf16)
    return ce, right, margin, on_device(rows, ce.device), on_device([len(t) for t in targets], ce.device)

"""A frozen causal LM with its tokenizer, named by a fingerprint (loaded by `memtok.model.loading`).

A memory only means something to the exact model that made it, so every loaded model carries a
fingerprint that memories record and decoding checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import MemtokError
from ..limits import PLACEHOLDER, check_template
from .identity import fingerprint
from .precision import Frame

# Config keys of models whose logits are more than head(decoder(x)): soft-capping (Gemma 2) or scaling
# (Cohere, Granite). Such models get their logits whole.
LOGIT_CHANGES = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def on_device(values: list, device: torch.device) -> torch.Tensor:
    """Host integers as a tensor on `device` without waiting for it: on a GPU they are staged in
    pinned memory and copied on the stream (`torch.tensor(list, device="cuda")` waits for it)."""
    t = torch.tensor(values, dtype=torch.long)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


@dataclass
class FrozenLM:
    """A causal LM whose weights never change, with its tokenizer and identity."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    # where it came from (`memtok.model.identity`), worked out when first asked: hashing a big local
    # model's files takes a while, and only a memory being written needs it
    describe: Callable[[], str] | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _prompts: dict = field(default_factory=dict, repr=False, compare=False)  # `embed_prompt`'s

    @functools.cached_property
    def source(self) -> str | None:
        """`hub:<id>@<commit>`, `sha256:<hex>` or `package:<name>`: what finds this model again."""
        return self.describe() if self.describe is not None else None

    @property
    def device(self) -> torch.device:
        """Where input vectors go: the input embeddings' device."""
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """What input vectors are made of: the input embeddings' dtype."""
        return self.model.get_input_embeddings().weight.dtype

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[0]

    @property
    def quantised(self) -> bool:
        """Weights quantised as loaded (bitsandbytes): LLM.int8 picks the columns it keeps in 16 bits
        from the whole batch, so a row's logits depend on the rows beside it."""
        return getattr(self.model, "hf_quantizer", None) is not None

    @property
    def layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            if getattr(cfg, key, None):
                return int(getattr(cfg, key))
        return int(self.tokenizer.model_max_length)

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            eos = self.model.config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            raise MemtokError(f"model {self.name} has no end-of-sequence token; memtok needs one to stop decoding")
        return int(eos)

    @property
    def bos_id(self) -> int | None:
        """The token placed before the memory: the BOS if the model has one, else the EOS.

        Small models given a memory vector at position 0 rarely get the first text tokens right
        (docs/results/README.md: the paper's layout); a real token in front of it acts as the attention
        sink they were trained with.
        """
        bos = self.tokenizer.bos_token_id
        if bos is None:
            bos = self.model.config.bos_token_id
        return int(bos) if bos is not None else self.eos_id

    def tokenize(self, text: str, specials: bool = False) -> list[int]:
        """Token ids of `text` alone: no special tokens added, and none parsed out of the text unless
        `specials` (a chat template's own markers)."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=not specials).input_ids)

    def template_ids(self, template: str, chat: bool = False) -> tuple[list[int], list[int], str]:
        """The token ids before and after `{memory}` in `template`, and the template they came from:
        with `chat`, the model's own chat template around `template` as the user's turn, ready for the
        reply (its special tokens parsed as such)."""
        if chat:
            if not getattr(self.tokenizer, "chat_template", None):
                raise MemtokError(f"model {self.name} has no chat template; leave out chat=True")
            template = self.tokenizer.apply_chat_template([{"role": "user", "content": template}], tokenize=False,
                                                          add_generation_prompt=True)
        head, _, tail = template.partition(PLACEHOLDER)
        ids = (self.tokenize(head, chat) if head else []), (self.tokenize(tail, chat) if tail else [])
        check_template(template)  # refused before any caller sees the ids
        return *ids, template

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input vectors through the model's own lookup (Gemma scales inside it)."""
        return self.model.get_input_embeddings()(ids)

    def logits(self, inputs: torch.Tensor, first: int = 0) -> torch.Tensor:
        """[B, T - first, vocabulary] float32 logits of input vectors [B, T, d], from position `first` on:
        one pass, no cache (decoding keeps its cache in `memtok.decode.greedy`)."""
        return self.model(inputs_embeds=inputs, use_cache=False).logits[:, first:].float()

    def embed_prompt(self, ids: tuple[int, ...]) -> torch.Tensor:
        """[len(ids), d] input vectors of a prompt's tokens, made once per prompt: every pass reads
        them, and none copies ids to the device again."""
        if ids not in self._prompts:
            with torch.no_grad():
                self._prompts[ids] = self.embed(on_device(list(ids), self.device))
        return self._prompts[ids]

    @functools.cached_property
    def embedding_mean(self) -> torch.Tensor:
        """Mean input vector over the vocabulary, as the model's lookup returns it."""
        return self._embedding_moments[0]

    @functools.cached_property
    def embedding_std(self) -> float:
        return self._embedding_moments[1]

    @functools.cached_property
    def frame(self) -> Frame:
        """Per-dimension mean and standard deviation of the input vectors: where low-bit memories live."""
        _, _, per_dim = self._embedding_moments
        return per_dim

    @functools.cached_property
    def _embedding_moments(self) -> tuple[torch.Tensor, float, Frame]:
        n = self.model.get_input_embeddings().weight.shape[0]
        total, sq = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, n, 8192):  # chunked: Gemma's 262k rows would not fit at once
                ids = torch.arange(start, min(n, start + 8192), device=self.device)
                e = self.embed(ids).double()
                total = total + e.sum(0)
                sq = sq + (e * e).sum(0)
        mean = total / n
        var = sq.sum() / (n * mean.numel()) - (mean.mean()) ** 2
        per_dim = (sq / n - mean ** 2).clamp_min(1e-12).sqrt()
        frame = Frame(mean.half().float(), per_dim.half().float().clamp_min(1e-3))
        return mean.to(self.model.get_input_embeddings().weight.dtype), float(var.clamp_min(0).sqrt()), frame

    @functools.cached_property
    def split_head(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """(decoder, output head) when the model's logits are just head(decoder(x)), so that logits can
        be made a few positions at a time; None for models that change them further (soft-capping,
        scaling), which then get their logits whole. Checked once on a few positions."""
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        cfg = self.model.config
        # a change the numbers below could miss: in 16 bits a soft cap at 30 moves a logit of 3 by less
        # than the tolerance, which is 64 of its rounding steps
        if decoder is None or head is None or any(getattr(cfg, key, None) for key in LOGIT_CHANGES):
            return None
        x = self.embed(torch.arange(min(8, self.model.config.vocab_size), device=self.device))[None]
        with torch.no_grad():
            whole = self.model(inputs_embeds=x, use_cache=False).logits
            # a head on another GPU than the last layer (`--device auto`) gives its logits there
            split = head(decoder(inputs_embeds=x, use_cache=False).last_hidden_state).to(whole.device)
        # the same operations on the same inputs: only a different kernel choice could round differently
        close = torch.allclose(whole, split, rtol=0, atol=64 * torch.finfo(whole.dtype).eps * float(whole.abs().max()))
        return (decoder, head) if close else None

    @functools.cached_property
    def vocabulary(self) -> torch.Tensor:
        """[V, d] float32: every token's input vector, as the model's own lookup returns it."""
        n = self.model.get_input_embeddings().weight.shape[0]
        with torch.no_grad():
            return torch.cat([self.embed(torch.arange(s, min(n, s + 8192), device=self.device)).float()
                              for s in range(0, n, 8192)])

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model, self.tokenizer)
        return self._fingerprint

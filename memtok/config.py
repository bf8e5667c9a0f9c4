"""`EncodeConfig`: every choice that decides how texts become memories, in one checked record.

The same record drives `MemoryCodec.encode`, `memtok eval`, `memtok capacity` and
`memtok encode-corpus`, and its `to_dict()` is what their settings files pin, so a resumed run can
tell whether it would make the same memories.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import MemtokError
from .limits import MAX_K, PLACEHOLDER, check_template, k_ok
from .precision import DTYPES, FRAMED, check_dtype, framed
from .recipes import DEFAULT_RECIPE, Recipe, get_recipe

AUTO = "auto"  # the fewest vectors per segment, by search
PLAN = "plan"  # vectors and segments from the capacity measured per vector (`memtok.plan`)
FAVOUR = ("steps", "bytes")
COMPACT_DTYPE = "int4"  # what `compact=True` stores unless told otherwise (docs/results/README.md, compact)
MAX_BATCH_TOKENS = 1024  # input positions in one forward pass: what bounds memory, whatever the texts
# Fields that change neither a memory nor whether it is exact, only how fast it comes: a resumed
# run may change them.
SPEED_ONLY = ("batch_size", "max_batch_tokens", "recompute_layers")


@dataclass
class EncodeConfig:
    """How to encode: checked on creation; the model-dependent checks are `MemoryCodec.check`'s.

    Example:
        >>> EncodeConfig(k=1, recipe="memtok:lr=0.1", max_steps=500).recipe.max_steps
        500
    """

    k: int | str = field(default=PLAN, metadata={"help": "memory vectors per segment; 'plan': from the capacity "
                                                         "measured per vector; 'auto': the fewest, by search"})
    favour: str = field(default="steps", metadata={"help": "with k='plan': 'steps' (short segments, fast) or "
                                                           "'bytes' (long segments, fewer vectors)"})
    recipe: str | Recipe | None = field(default=None, metadata={"help": "a recipe name or a `Recipe`; None: the "
                                                                  "default for the model "
                                                                  "(`memtok.recipes.default_recipe`)"})
    max_steps: int | None = field(default=None, metadata={"help": "overrides the recipe's step limit"})
    template: str = field(default=PLACEHOLDER, metadata={"help": "prompt around the vectors, e.g. "
                                                                 "'Recall: {memory}'"})
    chat: bool = field(default=False, metadata={"help": "put the memory inside the model's own chat template, as "
                                                        "the user's turn (`template` is that turn), so that the "
                                                        "text comes back as the assistant's reply"})
    dtype: str = field(default="float32", metadata={"help": f"storage precision: {', '.join(DTYPES)}; the "
                                                            "vectors are optimised through the rounding"})
    segment_tokens: int | None = field(default=None, metadata={"help": "cut texts into pieces of at most this "
                                                                       "many text tokens, each with its own vectors"})
    batch_size: int = field(default=8, metadata={"help": "texts optimised side by side"})
    max_batch_tokens: int = field(default=MAX_BATCH_TOKENS, metadata={"help": "input positions in one forward "
                                                                              "pass, what bounds memory"})
    semantic: bool = field(default=False, metadata={"help": "make each memory's vectors also a sentence embedding "
                                                            "of its text (`memtok.semantic`), for a vector search"})
    recompute_layers: bool = field(default=False, metadata={"help": "recompute each layer's activations in the "
                                                                    "backward pass instead of keeping them: "
                                                                    "less memory for long texts on big models, "
                                                                    "one more forward pass a step"})
    keep_text: bool = field(default=False, metadata={"help": "store the text in the memory (else its sha256)"})
    compact: bool = field(default=False, metadata={"help": "the smallest exact memory: low-bit levels in the "
                                                           f"model's frame ({COMPACT_DTYPE} unless `dtype` names "
                                                           "another framed one) and long segments"})

    def __post_init__(self) -> None:
        if self.k not in (AUTO, PLAN) and not k_ok(self.k):
            raise MemtokError(f"k must be a number of vectors from 1 to {MAX_K}, 'plan' or 'auto', got {self.k!r}")
        if self.favour not in FAVOUR:
            raise MemtokError(f"favour must be one of {', '.join(FAVOUR)}, got {self.favour!r}")
        if self.recipe is not None:
            self.recipe = get_recipe(self.recipe)
        if self.max_steps is not None:  # checked now, whichever recipe the default turns out to be
            limited = get_recipe(self.recipe or DEFAULT_RECIPE).replace(max_steps=self.max_steps)
            self.recipe = limited if self.recipe is not None else None
        check_template(self.template)
        check_dtype(self.dtype)
        if self.compact and self.dtype == "float32":
            self.dtype = COMPACT_DTYPE
        if self.compact and not framed(self.dtype):
            raise MemtokError(f"a compact memory is stored in low-bit levels ({', '.join(FRAMED)}), not {self.dtype}")
        if self.segment_tokens is not None and self.segment_tokens < 1:
            raise MemtokError(f"a segment must hold at least one token, got {self.segment_tokens}")
        if self.batch_size < 1:
            raise MemtokError(f"batch size must be at least 1, got {self.batch_size}")
        if self.max_batch_tokens < 2:
            raise MemtokError(f"max_batch_tokens must be at least 2, got {self.max_batch_tokens}")

    @property
    def auto(self) -> bool:
        return self.k == AUTO

    @property
    def fixed(self) -> bool:
        """K is a number the user chose, not found by memtok."""
        return self.k not in (AUTO, PLAN)

    def replace(self, **changes) -> EncodeConfig:
        return dataclasses.replace(self, **changes)

    @property
    def plain_plan(self) -> bool:
        """The default plan's short float32 segments with nothing around the memory: where a learned
        start was measured to pay (`memtok.recipes.default_recipe`)."""
        return (self.k == PLAN and self.favour == "steps" and self.segment_tokens is None
                and self.dtype == "float32" and self.template == PLACEHOLDER and not self.chat)

    def to_dict(self) -> dict:
        """Plain JSON types, the recipe in full with `max_steps` applied (so `max_steps` is not repeated)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "max_steps"}
        d["recipe"] = None if self.recipe is None else self.recipe.to_dict()
        return d

    @classmethod
    def from_options(cls, config: EncodeConfig | None = None, **options) -> EncodeConfig:
        """`config` (default: the defaults) with keyword `options` changed, refusing unknown ones with
        the list of valid ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise MemtokError(f"unknown encode option(s) {', '.join(unknown)}; valid: {', '.join(known)}")
        if config is None:
            return cls(**options)
        return config.replace(**options) if options else config

"""`EncodeConfig`: every choice that decides how texts become memories, in one checked record.

The same record drives `MemoryCodec.encode`, `memtok eval`, `memtok capacity` and
`memtok encode-corpus`, and its `to_dict()` is what their settings files pin, so a resumed run can
tell whether it would make the same memories.
"""

from __future__ import annotations

import dataclasses
from dataclasses import Field, dataclass, field
from typing import Literal, TypedDict

from ..errors import MemtokError
from ..limits import MAX_K, PLACEHOLDER, check_template, k_ok
from ..model.dtypes import DTYPES, FRAMED, check_dtype, framed
from .recipes import DEFAULT_RECIPE, MEMTOK_LEARNED, Recipe, default_recipe, get_recipe

AUTO = "auto"  # the fewest vectors per segment, by search
PLAN = "plan"  # vectors and segments from the capacity measured per vector (`memtok.encode.plan`)
FAVOUR = ("steps", "bytes")
COMPACT_DTYPE = "int4"  # what `compact=True` stores unless told otherwise (docs/results/README.md, compact)
DEFAULT_TEACHER = "minilm"  # a semantic memory's teacher unless told (`memtok.start.teachers`, docs/retrieval.md)
SELF = "self-middle-mean"  # what a memory taught by its own model records
MINILM = "all-MiniLM-L6-v2"
ALIASES = {"self": SELF, "minilm": MINILM}
TEACHERS = (*ALIASES, SELF, MINILM)  # the names memtok knows without asking a hub
MAX_BATCH_TOKENS = 1024  # input positions in one forward pass: what bounds memory, whatever the texts
# Fields that change neither a memory nor whether it is exact, only how fast it comes: a resumed
# run may change them.
SPEED_ONLY = ("batch_size", "max_batch_tokens", "recompute_layers")


def option(default: object, help: str, *flags: str, texts_only: bool = False, choices: tuple[str, ...] = (),
           low: int | None = None, high: int | None = None, kind: str | None = None) -> Field:
    """An `EncodeConfig` field, declared once for Python and for the command line
    (`memtok.cli.options` makes its option from this): its default and help; `flags` (default:
    `--field-name`); `texts_only`, offered only by commands that encode whole texts; `choices`, or
    the bounds `low`..`high` of a number; or the `kind` of value it takes where it is none of those
    ("k", "recipe", "teacher": the command line checks each as it is typed)."""
    return field(default=default, metadata={"help": help, "flags": flags, "texts_only": texts_only,
                                            "choices": choices, "low": low, "high": high, "kind": kind})


def cli_flag(f: Field) -> str:
    """A field's command-line option: the first spelling it declares, or `--field-name`."""
    return (f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",))[0]


def _bounds(low: int | None, high: int | None) -> str:
    return f"from {low} to {high}" if low is not None and high is not None else \
        f"of at least {low}" if low is not None else f"of at most {high}"


@dataclass
class EncodeConfig:
    """How to encode: checked on creation; the model-dependent checks are `memtok.encode.resolved.resolve`'s.

    Example:
        >>> EncodeConfig(k=1, recipe="memtok:lr=0.1", max_steps=500).recipe.max_steps
        500
    """

    # `--tokens` is the paper's word for K ("memory tokens") and the spelling of the commands recorded
    # in docs/results, so it stays as an alias of `--vectors`
    k: int | str = option(PLAN, "memory vectors per segment: N (the paper's protocol: 1), 'plan' (from the capacity "
                                "measured per vector, see favour) or 'auto' (the fewest, by search)",
                          "--vectors", "-k", "--tokens", kind="k")
    favour: str = option("steps", "with k 'plan': short segments, one vector each, fast ('steps'), or long ones, "
                                  "fewer vectors ('bytes')", texts_only=True, choices=FAVOUR)
    recipe: str | Recipe | None = option(None, "optimisation recipe, with fields changed as in "
                                               "'memtok:lr=0.1:rank=64' (docs/method.md); default: "
                                               f"{DEFAULT_RECIPE}, or {MEMTOK_LEARNED.name} for the default plan on "
                                               "a model with a learned start", kind="recipe")
    max_steps: int | None = option(None, "give up on a text after this many steps (default: the recipe's)",
                                   low=1, high=1_000_000)
    template: str = option(PLACEHOLDER, "prompt around the memory vectors, e.g. 'Recall: {memory}'")
    chat: bool = option(False, "the memory (in its template) as the user's turn of the model's chat template; the "
                               "text comes back as the reply")
    storage: str = option("float32", "storage precision of the saved vectors; they are optimised through its "
                                     "rounding and verified after it", "--storage", choices=DTYPES)
    segment_tokens: int | None = option(None, "cut texts into pieces of at most this many text tokens, each with "
                                              "its own vectors (texts longer than the model's context are always "
                                              "cut)", texts_only=True, low=1)
    batch_size: int = option(8, "texts optimised side by side", "--batch-size", "-b", low=1, high=1024)
    max_batch_tokens: int = option(MAX_BATCH_TOKENS, "input positions in one forward pass, what bounds memory",
                                   low=2)
    semantic: str | None = option(None, "also make each memory a sentence embedding (for `search --method vector`), "
                                        "taught by TEACHER: minilm (the default; memtok[semantic]), self, or a "
                                        "sentence-transformers id or folder", kind="teacher")
    recompute_layers: bool = option(False, "recompute each layer's activations in the backward pass instead of "
                                           "keeping them: less memory for long texts on big models, one more "
                                           "forward pass a step")
    keep_text: bool = option(False, "store the text in the memory (otherwise only its sha256)", texts_only=True)
    compact: bool = option(False, "the smallest exact memory memtok makes: low-bit levels in the model's frame "
                                  f"({COMPACT_DTYPE} unless storage names another framed one) and long segments",
                           texts_only=True)

    def __post_init__(self) -> None:
        if self.k not in (AUTO, PLAN) and not k_ok(self.k):
            raise MemtokError(f"k must be a number of vectors from 1 to {MAX_K}, 'plan' or 'auto', got {self.k!r}")
        if self.favour not in FAVOUR:
            raise MemtokError(f"favour must be one of {', '.join(FAVOUR)}, got {self.favour!r}")
        if self.favour != FAVOUR[0] and (self.k != PLAN or self.compact):  # every option has an effect, or is refused
            raise MemtokError(f"favour={self.favour!r} picks the plan's segment length; with "
                              f"{'compact' if self.compact else f'k={self.k!r}'} it would have no effect")
        if self.recipe is not None:
            self.recipe = get_recipe(self.recipe)
        if self.max_steps is not None:  # checked now, whichever recipe the default turns out to be
            limited = get_recipe(self.recipe or DEFAULT_RECIPE).replace(max_steps=self.max_steps)
            self.recipe = limited if self.recipe is not None else None
        check_template(self.template)
        check_dtype(self.storage)
        if self.compact and self.storage == "float32":
            self.storage = COMPACT_DTYPE
        if self.compact and not framed(self.storage):
            raise MemtokError(f"a compact memory is stored in low-bit levels ({', '.join(FRAMED)}), not {self.storage}")
        if self.semantic is True or self.semantic is False:  # Python's semantic=True: the default teacher
            self.semantic = DEFAULT_TEACHER if self.semantic else None
        if self.semantic is not None and not (isinstance(self.semantic, str) and self.semantic.strip()):
            raise MemtokError(f"semantic must name a teacher (e.g. {DEFAULT_TEACHER}, self), got {self.semantic!r}")
        if self.semantic and framed(self.storage):  # its code would be rounded to a few levels with the rest
            raise MemtokError(f"a semantic memory keeps its code in its vectors, which {self.storage} levels would move: "
                              "store it in float32, float16, bfloat16 or int8")
        for f in dataclasses.fields(self):  # the bounds a field declares hold in Python as on the command line
            value, low, high = getattr(self, f.name), f.metadata["low"], f.metadata["high"]
            if value is None or (low is None and high is None):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low) \
                    or (high is not None and value > high):
                raise MemtokError(f"{f.name} must be a whole number {_bounds(low, high)}, got {value!r}")

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
        start was measured to pay (`memtok.settings.recipes.default_recipe`)."""
        return (self.k == PLAN and self.favour == "steps" and self.segment_tokens is None
                and self.storage == "float32" and self.template == PLACEHOLDER and not self.chat)

    def decided(self, learned_start: bool) -> EncodeConfig:
        """This config with its recipe decided: as given, else the default for its plan on a model with
        or without a learned start (`memtok.settings.recipes.default_recipe`)."""
        if self.recipe is not None:
            return self
        return self.replace(recipe=default_recipe(self.plain_plan, learned_start))

    @property
    def framed(self) -> bool:
        """Whether its storage dtype keeps low-bit levels in the model's frame."""
        return framed(self.storage)

    def to_dict(self) -> dict:
        """Plain JSON types, the recipe in full with `max_steps` applied (so `max_steps` is not repeated)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "max_steps"}
        d["recipe"] = None if self.recipe is None else self.recipe.to_dict()
        return d

    @classmethod
    def from_options(cls, config: EncodeConfig | None = None, **options) -> EncodeConfig:
        """`config` (default: the defaults) with keyword `options` changed, refusing unknown ones with
        the list of valid ones."""
        if "dtype" in options:  # one meaning per word: dtype is the model's arithmetic
            raise MemtokError("dtype is what the model computes in (MemoryCodec.from_pretrained(dtype=...)); the "
                              f"saved vectors' precision is storage={options['dtype']!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise MemtokError(f"unknown encode option(s) {', '.join(unknown)}; valid: {', '.join(known)}")
        if config is None:
            return cls(**options)
        return config.replace(**options) if options else config


class EncodeOptions(TypedDict, total=False):
    """`EncodeConfig`'s fields as keyword options of `MemoryCodec.encode` (`**options:
    Unpack[EncodeOptions]`): what an editor completes and a type checker checks. A test keeps the two
    the same."""

    k: int | Literal["plan", "auto"]
    favour: Literal["steps", "bytes"]
    recipe: str | Recipe | None
    max_steps: int | None
    template: str
    chat: bool
    storage: Literal["float32", "float16", "bfloat16", "int8", "int4", "ternary", "binary"]
    segment_tokens: int | None
    batch_size: int
    max_batch_tokens: int
    semantic: str | None
    recompute_layers: bool
    keep_text: bool
    compact: bool

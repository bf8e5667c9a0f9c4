"""Named optimisation recipes: how a memory vector is initialised, updated and judged done.

A recipe is a frozen dataclass so that it can be written next to every memory it made (as
nanoGPT writes its config into each checkpoint) and compared field by field.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from ..errors import MemtokError


class Optimizer(str, enum.Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Init(str, enum.Enum):
    MEAN = "mean"  # the mean input embedding: what resize_token_embeddings gives a new row
    NORMAL = "normal"  # normal(0, std of the embedding matrix), Kuratov et al.
    TEXT = "text"  # the mean of the text's own token embeddings
    LEARNED = "learned"  # the model's learned start (`memtok.start.start`) where one is installed, else the mean


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    COSINE = "cosine"  # from lr to lr * final_lr_ratio over max_steps


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how one text's memory vectors are optimised."""

    name: str = field(metadata={"help": "name the recipe is registered under"})
    optimizer: Optimizer = field(default=Optimizer.ADAM, metadata={"help": "sgd, adam or adamw"})
    lr: float = field(default=0.03, metadata={"help": "learning rate (peak rate with a schedule)"})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam betas"})
    momentum: float = field(default=0.0, metadata={"help": "SGD momentum (heavy ball, as torch.optim.SGD)"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay (adamw only)"})
    schedule: Schedule = field(default=Schedule.CONSTANT, metadata={"help": "learning-rate schedule"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up of the rate over these first steps"})
    final_lr_ratio: float = field(default=0.1, metadata={"help": "cosine schedule: last rate / lr"})
    max_steps: int = field(default=2000, metadata={"help": "give up on a text after this many updates"})
    patience: int | None = field(default=None, metadata={"help": "give up after this many steps without a better accuracy"})
    restart_after: int | None = field(default=None, metadata={"help": "start again (from `restart_init`, with a "
                                                                      "new random factorisation) after this many "
                                                                      "steps without a better accuracy since the "
                                                                      "last start; the steps go on counting"})
    restart_init: Init = field(default=Init.MEAN, metadata={"help": "where a restart starts: mean, or learned "
                                                                     "(the text's learned start again, a new "
                                                                     "random step away from it)"})
    init: Init = field(default=Init.MEAN, metadata={"help": "starting point of the vectors"})
    rank: int = field(default=0, metadata={"help": "learn the vectors as start + z @ W.T, with z [K, rank] and "
                                                   "W [d, rank] both learned; 0: learn the vectors themselves"})
    z_scale: float = field(default=1.0, metadata={"help": "spread of z's random start: 1 puts the vectors about one "
                                                          "token embedding's spread from the start, 0 exactly on it"})
    bos: bool = field(default=True, metadata={"help": "put the model's BOS (or EOS) token before the memory"})
    wrong_weight: float = field(default=0.0, metadata={"help": "extra loss weight on positions whose argmax is wrong"})
    first_weight: float = field(default=1.0, metadata={"help": "loss weight of the first two targets"})
    eos_weight: float = field(default=1.0, metadata={"help": "loss weight of the last target (EOS: where the "
                                                             "text ends, the hardest after a cut mid-word)"})
    clip: float = field(default=0.0, metadata={"help": "clip each text's gradient to this norm; 0: no clipping"})
    grow_tokens: int = field(default=0, metadata={"help": "solve the first N targets, then N more at a time from "
                                                          "that solution (a growing target); 0: all from the start"})
    vocab_weight: float = field(default=0.0, metadata={"help": "loss weight of each vector's squared distance to its "
                                                                "nearest token's input vector (relative to that "
                                                                "vector's norm): memories that hide among tokens"})
    min_margin: float = field(default=0.0, metadata={"help": "done when every target wins by at least this many logits"})
    seed: int = field(default=0, metadata={"help": "seed of a random init"})
    bf16: bool = field(default=False, metadata={"help": "run the optimisation's passes under bfloat16 autocast "
                                                        "(greedy verification stays in the model's dtype)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        object.__setattr__(self, "init", Init(self.init))
        object.__setattr__(self, "restart_init", Init(self.restart_init))
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.lr <= 0:
            raise MemtokError(f"recipe {self.name}: lr must be positive, got {self.lr}")
        if not 1 <= self.max_steps <= 1_000_000:
            raise MemtokError(f"max steps must be between 1 and 1000000, got {self.max_steps}")
        if not 0 <= self.rank <= 4096:
            raise MemtokError(f"recipe {self.name}: rank must be between 0 and 4096, got {self.rank}")
        if min(self.warmup_steps, self.clip, self.grow_tokens, self.z_scale, self.vocab_weight) < 0 or min(self.first_weight, self.eos_weight) <= 0:
            raise MemtokError(f"recipe {self.name}: warmup_steps, clip, grow_tokens, z_scale and vocab_weight must be >= 0, "
                              f"the weights > 0")
        if self.min_margin < 0:
            raise MemtokError(f"recipe {self.name}: min_margin must be >= 0, got {self.min_margin}")
        if self.restart_after is not None and self.restart_after < 1:
            raise MemtokError(f"recipe {self.name}: restart_after must be at least 1, got {self.restart_after}")
        if self.restart_init is Init.LEARNED and self.init is not Init.LEARNED:
            raise MemtokError(f"recipe {self.name}: restart_init=learned starts again from where init=learned "
                              f"began; this recipe's init is {self.init.value}")

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON types: what a memory's header and a run's settings hold."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in d.items()}


# The official code of Sastre & Rosa: a new vocabulary row (initialised by resize_token_embeddings
# to the mean embedding), no BOS, plain SGD at lr 5 for at most 3000 steps, stop when exact.
PAPER = Recipe(name="paper", optimizer=Optimizer.SGD, lr=5.0, max_steps=3000, init=Init.MEAN, bos=False)

# Kuratov et al. 2025, "Cramming 1568 tokens into a single vector", at memtok's layout (BOS first).
KURATOV = Recipe(name="kuratov", optimizer=Optimizer.ADAMW, lr=0.01, betas=(0.9, 0.9), weight_decay=0.01,
                 max_steps=5000, patience=2000, init=Init.NORMAL, bos=True)

# memtok's default: Adam at lr 0.2 on a low-rank over-parameterisation of the vectors
# (start + z @ W.T, both learned, rank 32; Tarasov et al.'s low-dimensional projection, here per
# text), from the mean embedding, BOS first, done at a margin of 0.2 logits. On the first 8 rows of
# raschka_chunks_100 it made 8/8 exact at a median 56.0 steps (lr 0.03: 150; plain SGD at lr 10,
# `memtok-sgd`: 5/8 within 400), and 10/10 64-token texts exact at a median 142 steps, where lr 0.4
# missed one of them within 600 (docs/performance.md, recipes).
MEMTOK = Recipe(name="memtok", optimizer=Optimizer.ADAM, lr=0.2, rank=32, max_steps=2000, init=Init.MEAN, bos=True,
                min_margin=0.2)

# The paper's optimiser at twice its rate, at memtok's layout: what plain SGD reaches with BOS first.
MEMTOK_SGD = Recipe(name="memtok-sgd", optimizer=Optimizer.SGD, lr=10.0, max_steps=2000, init=Init.MEAN, bos=True,
                    min_margin=0.2)

# The default under bfloat16 autocast: faster steps on CPUs with AVX512-BF16 (docs/performance.md),
# verified in float32. Not the default: on a CPU without fast bf16 it would be slower, and a
# default should give the same memory on every machine.
MEMTOK_BF16 = MEMTOK.replace(name="memtok-bf16", bf16=True)

# The default plan's recipe on a model with a learned start (`memtok train-start`; the mean embedding
# for a model without one), at lr 0.3, started again from the mean after 60 steps without a better
# accuracy: a learned start now and then lands in a trap that holds one token wrong for hundreds of
# steps. On the default encode of the first 10 texts of raschka_chunks_1000 it took 0.503x the steps
# and 0.58x the wall time of `memtok` (docs/results/bench/learned-default-r1000-first10.json); with
# --compact a learned start took 1.18x the steps of the mean (docs/performance.md), so
# `default_recipe` gives it only to the default plan.
MEMTOK_LEARNED = MEMTOK.replace(name="memtok-learned", init=Init.LEARNED, lr=0.3, restart_after=60)

RECIPES: dict[str, Recipe] = {r.name: r for r in (MEMTOK, MEMTOK_BF16, MEMTOK_LEARNED, MEMTOK_SGD, PAPER, KURATOV)}
DEFAULT_RECIPE = MEMTOK.name


def default_recipe(plain_plan: bool, learned_start: bool) -> Recipe:
    """The recipe of an encode that names none: `memtok-learned` for the default plan's short float32
    segments with no prompt around the memory (`plain_plan`) on a model with a learned start installed
    (`learned_start`), the only cells where that start was measured to pay; `memtok` everywhere else.
    A run folder pins what it chose, so a start installed later never changes what the folder resumes with."""
    return MEMTOK_LEARNED if plain_plan and learned_start else RECIPES[DEFAULT_RECIPE]


def _field_value(name: str, text: str) -> object:
    """`text` as the type of Recipe field `name`, or a one-line error saying what it must be."""
    kind = {f.name: f.type for f in dataclasses.fields(Recipe)}[name]
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind == "int":
            return int(text)
        if kind == "int | None":
            return None if text.lower() == "none" else int(text)
        if kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if kind == "tuple[float, float]":
            a, b = text.split(",")
            return float(a), float(b)
        return text  # an enum or a string: the Recipe checks it
    except ValueError:
        raise MemtokError(f"recipe field {name} takes {kind.replace(' | None', ' or none')}, got {text!r}") from None


def parse_recipe(spec: str) -> Recipe:
    """A recipe from `name[:field=value]...`, e.g. `memtok:lr=0.1:rank=64` or `paper:bos=true`:
    the named recipe with those fields changed, each checked; `name` is the spec as given, so a run
    folder and a memory record what was asked as well as every field's value."""
    head, *overrides = spec.split(":")
    if head not in RECIPES:
        raise MemtokError(f"unknown recipe {head!r}; choose one of {', '.join(RECIPES)}")
    settable = [f.name for f in dataclasses.fields(Recipe) if f.name != "name"]
    changes = {}
    for item in overrides:
        name, eq, text = item.partition("=")
        if not eq or name not in settable:
            raise MemtokError(f"recipe {spec!r}: {item!r} is not field=value with a recipe field; "
                              f"fields: {', '.join(settable)}")
        changes[name] = _field_value(name, text)
    try:
        return RECIPES[head].replace(name=spec, **changes) if changes else RECIPES[head]
    except ValueError as exc:  # an enum field given a value it does not have
        raise MemtokError(f"recipe {spec!r}: {exc}") from None


def recipe_spec(recipe: dict) -> str:
    """The shortest `name:field=value...` that gives back this recipe (as `Recipe.to_dict` or a run
    folder holds it): the registered recipe its name starts with, and each field that differs."""
    base = RECIPES.get(str(recipe.get("name", "")).split(":")[0], RECIPES[DEFAULT_RECIPE])
    known = base.to_dict()
    changed = []
    for name, value in recipe.items():
        if name != "name" and name in known and value != known[name]:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value).lower() \
                if isinstance(value, bool) or value is None else str(value)
            changed.append(f"{name}={text}")
    return ":".join([base.name, *changed])


def get_recipe(name_or_recipe: str | Recipe) -> Recipe:
    """A `Recipe` as given, by name, or by a `name:field=value...` spec (`parse_recipe`)."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    return parse_recipe(name_or_recipe)

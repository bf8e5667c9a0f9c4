"""An encode's settings, decided once at the boundary into what the layers below take.

`EncodeConfig` says what was asked; `Resolved` is what it comes to on one model: the recipe (the
default decided, `memtok.recipes.default_recipe`), the layout around the vectors, and the learned
start the recipe begins from. `MemoryCodec.resolve` makes it; the optimiser, the checkpoint, the
encode's bookkeeping and a run folder's pinned settings all read it and derive nothing again, so a
start installed in the middle of a call cannot change what the call does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .auto_k import max_auto_k
from .config import EncodeConfig
from .layout import Layout
from .model import FrozenLM
from .recipes import Init, Recipe, default_recipe
from .semantic import SemanticSpace
from .start import LearnedStart, find_start, start_name, start_path


def decide_recipe(lm: FrozenLM, config: EncodeConfig) -> EncodeConfig:
    """`config` with its recipe decided: as given, else the default for this model and config."""
    if config.recipe is not None:
        return config
    return config.replace(recipe=default_recipe(config.plain_plan, start_path(lm) is not None))


def layout_for(lm: FrozenLM, config: EncodeConfig, k: int | None = None) -> Layout:
    """The layout of `k` vectors (default: the config's K, or the most a search or a plan may try)."""
    if k is None:
        k = config.k if config.fixed else max_auto_k(lm.context_length)
    if config.chat:  # the chat template brings its own start, so no BOS of the recipe's before it
        return Layout.build(lm, lm.chat_template(config.template), k, bos=False, specials=True)
    return Layout.build(lm, config.template, k, config.recipe.bos)


@dataclass(frozen=True)
class Resolved:
    """What one encode runs with (`config.recipe` is decided)."""

    config: EncodeConfig
    layout: Layout
    start: LearnedStart | None = None  # read when the recipe's init is `Init.LEARNED`
    semantic: SemanticSpace | None = None  # where the memories keep their text's code, with `config.semantic`

    @classmethod
    def of(cls, lm: FrozenLM, config: EncodeConfig) -> Resolved:
        """`config` (checked) resolved on `lm`: its recipe, its layout, and its learned start if it uses one."""
        config = decide_recipe(lm, config)
        start = find_start(lm) if config.recipe.init is Init.LEARNED else None
        return cls(config, layout_for(lm, config), start, SemanticSpace.of(lm) if config.semantic else None)

    @property
    def recipe(self) -> Recipe:
        return self.config.recipe

    @property
    def start_name(self) -> str:
        """What the memories record as their start: the learned start's name, or the recipe's init."""
        return start_name(self.recipe.init, self.start)

    def checkpoint_key(self, lm: FrozenLM) -> str:
        """What a saved optimisation state is only valid under: the model, recipe, storage dtype,
        prompt and, for a learned start, that start; for semantic memories, their space."""
        made = [lm.fingerprint, self.recipe.to_dict(), self.config.dtype, self.layout.prefix_ids,
                self.layout.infix_ids]
        if self.recipe.init is Init.LEARNED:  # a state only goes on from the start it began at
            made.append(self.start_name)
        if self.semantic is not None:
            made.append(self.semantic.describe())
        return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:32]

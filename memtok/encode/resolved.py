"""An encode's settings, decided once at the boundary into what the layers below take.

`EncodeConfig` says what was asked; `Resolved` is what it comes to on one model: the recipe (the
default decided, `memtok.settings.recipes.default_recipe`), the layout around the vectors, how segments get
their vectors and how long they may be, the learned start the recipe begins from, where semantic
memories keep their code, and the frame of a low-bit storage dtype. `resolve` makes it, checked;
the runs pin `Resolved.config` and hand the same `Resolved` to `MemoryCodec.encode`, and the
optimiser, the checkpoint and the encode's bookkeeping read it and derive nothing again, so a start
installed in the middle of a run cannot change what the run does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..model.layout import Layout
from ..model.model import FrozenLM
from ..model.precision import Frame
from ..settings.config import EncodeConfig
from ..settings.recipes import Init, Recipe
from ..start.semantic import SemanticSpace
from ..start.start import LearnedStart, find_start, start_name, start_path
from .learned_vectors import parameters
from .plan import FixedK, PlannedK, SmallestK, segment_plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    """What one encode runs with on one model (`config.recipe` is decided)."""

    config: EncodeConfig  # what a run folder pins
    layout: Layout  # with the config's K, or the most a plan or a search may try
    policy: FixedK | PlannedK | SmallestK  # how segments get their vectors (a search learns across the calls)
    room: int  # text tokens one segment may hold beside the layout's vectors, in the context and in one pass
    segment_limit: int  # text tokens a segment is cut to: the room, and what was asked or the policy allows
    start: LearnedStart | None = None  # read when the recipe's init is `Init.LEARNED`
    semantic: SemanticSpace | None = None  # where the memories keep their text's code, with `config.semantic`
    frame: Frame | None = None  # the model's frame, for a storage dtype of low-bit levels
    # how a text's learned parameters are made from its start: the extension point for another
    # parameterisation (`dataclasses.replace(resolved, make_vectors=...)`, as bench/random_basis.py)
    make_vectors: Callable = parameters

    @property
    def recipe(self) -> Recipe:
        return self.config.recipe

    @property
    def storage(self) -> str:
        """The dtype the memories' vectors are stored in (`memtok.model.precision.STORAGE`)."""
        return self.config.storage

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def max_batch_tokens(self) -> int:
        return self.config.max_batch_tokens

    @property
    def recompute_layers(self) -> bool:
        return self.config.recompute_layers

    @property
    def start_name(self) -> str:
        """What the memories record as their start: the learned start's name, or the recipe's init."""
        return start_name(self.recipe.init, self.start)

    def with_k(self, lm: FrozenLM, k: int) -> Resolved:
        """The same settings with `k` vectors per segment: only the plan is made again (its recipe is
        decided, its start and space are these)."""
        config = self.config.replace(k=k)
        layout, policy, room, limit = segment_plan(lm, config)
        return dataclasses.replace(self, config=config, layout=layout, policy=policy, room=room, segment_limit=limit)

    def checkpoint_key(self, lm: FrozenLM) -> str:
        """What a saved optimisation state is only valid under: the model, recipe, storage dtype,
        prompt and, for a learned start, that start; for semantic memories, their space."""
        made = [lm.fingerprint, self.recipe.to_dict(), self.storage, self.layout.prefix_ids,
                self.layout.infix_ids]
        if self.recipe.init is Init.LEARNED:  # a state only goes on from the start it began at
            made.append(self.start_name)
        if self.semantic is not None:
            made.append(self.semantic.describe())
        return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:32]


def resolve(lm: FrozenLM, config: EncodeConfig | Resolved | None = None, **options) -> Resolved:
    """What an encode with `config` (or one made from `options`, or `config` with `options` changed)
    runs with on `lm`, refused with one line if it does not fit the model. A `Resolved` is taken as
    it is: a run resolves once and hands the same one to every encode."""
    if isinstance(config, Resolved):
        if options:
            raise TypeError("options change a config, not settings already resolved")
        return config
    config = EncodeConfig.from_options(config, **options).decided(start_path(lm) is not None)
    layout, policy, room, limit = segment_plan(lm, config)
    start = find_start(lm) if config.recipe.init is Init.LEARNED else None
    if config.recipe.init is Init.LEARNED and start is None:
        logger.warning("recipe %s starts from a learned start, and none is installed for %s: starting from "
                       "the mean embedding (memtok train-start makes one)", config.recipe.name, lm.name)
    return Resolved(config, layout, policy, room, limit, start, SemanticSpace.of(lm, config.semantic) if config.semantic else None,
                    lm.frame if config.framed else None)

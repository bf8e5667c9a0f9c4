"""What a memory's shape may be, said once: how many vectors one optimisation may have, and the
form of the prompt around them. A memory file's header, a config and the command line each ask
here, so the three can never disagree.
"""

from __future__ import annotations

from .errors import MemtokError

MAX_K = 256  # vectors one optimisation (one segment) may have
PLACEHOLDER = "{memory}"  # where the vectors go in a prompt template


def k_ok(k: object) -> bool:
    return type(k) is int and 1 <= k <= MAX_K


def template_ok(template: object) -> bool:
    return isinstance(template, str) and template.count(PLACEHOLDER) == 1


def check_template(template: object) -> str:
    if not template_ok(template):
        raise MemtokError(f"template must contain {PLACEHOLDER} exactly once, got {template!r}")
    return template

"""Architecture search over specs.

- :mod:`assembly.search.space`: search spaces (choices, ranges, conditional parts) that
  yield validated specs, deduplicated and filtered by planned size, without torch;
- :mod:`assembly.search.run`: trials that build, train briefly and evaluate each spec,
  driven by Optuna (the optional extra ``search``), resumable from its storage;
- :mod:`assembly.search.cli`: the ``assemble search`` command.

Importing this package imports neither torch nor Optuna.
"""

from assembly.search.space import (
    Choice,
    Drawer,
    FloatRange,
    IntRange,
    Param,
    RandomDrawer,
    Space,
    When,
    load_space,
    space_from_dict,
)

__all__ = [
    "Choice",
    "Drawer",
    "FloatRange",
    "IntRange",
    "Param",
    "RandomDrawer",
    "Space",
    "When",
    "load_space",
    "space_from_dict",
]

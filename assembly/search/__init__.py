"""Architecture search over specs.

- :mod:`assembly.search.space`: search spaces (choices, ranges, conditional parts) that
  yield validated specs, deduplicated and filtered by planned size, without torch;
- :mod:`assembly.search.run`: trials that build, train briefly and evaluate each spec,
  driven by Optuna (the optional extra ``search``), resumable from its storage;
- :mod:`assembly.search.cli`: the ``assemble search`` command.

Importing this package imports neither torch nor Optuna (nor the space module until used).
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    """The space API, imported on first use (``assemble`` builds its parser with this
    package's CLI module and must not pay for the space classes on every command)."""
    if name in __all__:
        from assembly.search import space

        return getattr(space, name)
    raise AttributeError(name)

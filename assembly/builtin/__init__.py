"""The built-in components, registered through the same hooks as third-party plugins."""

from assembly.builtin.cells import BuiltinCells
from assembly.builtin.placements import BuiltinPlacements
from assembly.builtin.samplers import BuiltinSamplers

BUILTIN_PLUGINS = {
    "builtin-cells": BuiltinCells(),
    "builtin-samplers": BuiltinSamplers(),
    "builtin-placements": BuiltinPlacements(),
}

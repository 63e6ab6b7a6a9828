"""assembly: sequence-to-sequence RNN models declared as spec files.

Importing this package imports no torch. The entry points are:

- :func:`assembly.spec.load_spec` / :func:`assembly.spec.dump_spec` (spec files),
- :func:`assembly.plan.plan_model` (shapes and parameter counts, no torch),
- :func:`assembly.build.build_model` (the torch module),
- the ``assemble`` command line (:mod:`assembly.cli`).
"""

__version__ = "0.2.0"

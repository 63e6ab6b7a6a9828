"""``python -m assembly`` runs the ``assemble`` command line (also under torchrun)."""

from assembly.cli import main

raise SystemExit(main())

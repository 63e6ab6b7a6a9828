"""Load a model directory or run directory: the spec, the vocabularies, the weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from assembly.errors import UserError


@attrs.define
class LoadedRun:
    """A model ready to decode: the module (eval mode, placed as its spec's
    ``placement`` says), its spec, the vocabularies (None in continuous mode), the
    registry it was built with, and where it came from."""

    model: Any
    spec: Any
    source_vocab: Any
    target_vocab: Any
    registry: Any
    path: Path


def load_run(path: str | Path, registry: Any = None, *, device: str | None = None,
             weights: str = "model", threads: int | None = None) -> LoadedRun:
    """Load ``path`` (a model or run directory). ``weights="model"`` takes the run's
    final/best ``model.safetensors`` (or its latest checkpoint while still training).
    The model is placed as the spec's ``placement`` says, like the trainer places it;
    ``device`` puts all of it there instead. ``threads``: torch intra-op threads for decoding
    (None or 0: torch's default; the spec's ``training.threads`` is for training — large
    decoding batches gain from every core)."""
    from assembly.build import build_model
    from assembly.data import Vocabulary
    from assembly.placement import place_model, set_threads
    from assembly.spec import load_spec
    from assembly.train.checkpoint import latest_checkpoint, load_weights

    path = Path(path)
    if not (path / "spec.toml").exists():
        raise UserError(f"{path}: not a model or run directory (no spec.toml)")
    if registry is None:
        from assembly.registry import make_registry

        registry = make_registry()
    spec = load_spec(path / "spec.toml", registry)
    set_threads(threads)
    source_vocab = target_vocab = None
    if spec.token_mode:
        if not (path / "vocab.source.json").exists():
            raise UserError(f"{path}: no vocab.source.json / vocab.target.json (a model built "
                            f"from a spec with file data has its vocabularies only once trained)")
        source_vocab = Vocabulary.load(path / "vocab.source.json")
        target_vocab = Vocabulary.load(path / "vocab.target.json")
    model = build_model(spec, registry)
    weight_file = path / f"{weights}.safetensors"
    if not weight_file.exists():
        checkpoint = latest_checkpoint(path)
        if checkpoint is None:
            raise UserError(f"{path}: no {weight_file.name} and no checkpoint")
        weight_file = checkpoint / "model.safetensors"
    load_weights(model, weight_file)
    model, _placement = place_model(model, spec, registry, device)
    return LoadedRun(model.eval(), spec, source_vocab, target_vocab, registry, path)

"""``assembly.plugin``, the one module a plugin imports from: every name it exports
resolves, the error types and host functions are the core's own, and using them (loading,
dumping, a registry) imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import assembly.plugin as api
from assembly import errors, registry
from assembly.spec import io
from assembly.train import data_setup


@pytest.mark.parametrize("name", api.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(api, name) is not None


def test_errors_and_host_functions_are_the_cores_own() -> None:
    assert (api.SpecError, api.UserError, api.Problem) == (errors.SpecError, errors.UserError,
                                                           errors.Problem)
    assert (api.load_spec, api.dump_spec) == (io.load_spec, io.dump_spec)
    assert api.make_registry is registry.make_registry
    assert api.load_pairs is data_setup.load_pairs
    assert {"SpecError", "UserError", "Problem", "load_spec", "dump_spec",
            "make_registry", "load_pairs"} <= set(api.__all__)


def test_a_plugin_tool_needs_nothing_else(tmp_path: Path) -> None:
    from assembly.plugin import SpecError, dump_spec, load_spec, make_registry

    found = make_registry(entrypoints=False, strict=True)
    path = tmp_path / "spec.toml"
    path.write_text('[encoder]\nhidden = 8\n[decoder]\nhidden = 8\n')
    spec = load_spec(path, found)
    dump_spec(spec, tmp_path / "again.toml", found)
    assert load_spec(tmp_path / "again.toml", found) == spec
    path.write_text("[encoder]\nhidden = 0\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path, found)
    assert [p.path for p in caught.value.problems] == ["$.encoder.hidden"]
    assert all(isinstance(p, api.Problem) for p in caught.value.problems)


def test_the_public_api_imports_no_torch(tmp_path: Path) -> None:
    code = ("import sys\n"
            "from assembly.plugin import SpecError, UserError, Problem, load_spec, dump_spec, "
            "make_registry\n"
            "r = make_registry(entrypoints=False)\n"
            f"dump_spec(load_spec('specs/reference.toml', r), {str(tmp_path / 'x.toml')!r}, r)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])

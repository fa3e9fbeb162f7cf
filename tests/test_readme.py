"""CI must run exactly the README's two commands."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_commands():
    readme_commands = re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == readme_commands


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block, as written but for a shorter training run in a temporary folder."""
    block = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)[0]
    shortened = block.replace("epochs=3000", "epochs=20").replace("seeds=range(4)", "seeds=range(1)")
    assert shortened != block and 'out_dir="runs/p31"' in block
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(shortened, "README.md", "exec"), namespace)
    assert namespace["arcs_grouped"] is namespace["report"].tiers[2] and namespace["arcs_grouped"].certified.all()
    with pytest.raises(KeyError, match="no tier 'arc' in this report; it holds .*'arcs_grouped'"):
        namespace["report"].tier("arc")
    assert (tmp_path / "runs" / "p31" / "seed_0000.safetensors").exists()
    assert namespace["summary"]["seeds"] == [0] and (tmp_path / "runs" / "p31-study" / "models.csv").exists()


def test_the_docs_name_the_current_schema_versions():
    """The file formats' documentation follows the code's schema versions."""
    import importlib

    certify, explain = (importlib.import_module(f"quadlens.{name}") for name in ("certify", "explain"))
    bounds_doc = (ROOT / "docs" / "bounds.md").read_text()
    explain_doc = (ROOT / "docs" / "explain.md").read_text()
    assert f'`schema` "quadlens.bound", `schema_version` {certify.SCHEMA_VERSION};' in bounds_doc
    assert f"(schema `quadlens.explain`, version {explain.SCHEMA_VERSION})" in explain_doc

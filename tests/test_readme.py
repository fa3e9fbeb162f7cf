"""CI must run exactly the README's two commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_commands():
    readme_commands = re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == readme_commands

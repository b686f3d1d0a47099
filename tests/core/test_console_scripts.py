"""Every console script declared in setup.py imports, and its --help names the script itself."""

import importlib
import re
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "setup.py"
SCRIPTS = re.findall(r'"(autovla-[a-z-]+)=([a-z_.]+):([a-z_]+)"', SETUP.read_text(encoding="utf-8"))


def test_setup_declares_the_console_scripts():
    names = {name for name, _, _ in SCRIPTS}
    assert {"autovla-demo", "autovla-evaluate", "autovla-replay", "autovla-train-pipeline"} <= names


@pytest.mark.parametrize(("name", "module", "func"), SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_help_names_the_script(name, module, func, capsys):
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name} "), out[:200]

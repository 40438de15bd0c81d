"""The agent's own Python environment for benchmarks: `.venv-agent`, holding only what a clinic box
installs (`pip install .[agent]`), not the test environment's extras (PySocks and trio among them),
some of which the agent's libraries load when they find them installed: paho reads proxy settings
through urllib.request when PySocks is there, httpcore loads trio. Made at first use, brought in step
with pyproject.toml at each use (pip, from the package registry)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = REPO / ".venv-agent"


def agent_python() -> str:
    python = ENV / "bin" / "python"
    if not python.exists():
        print("bench: making .venv-agent (the agent's own dependencies, as a clinic box installs them)", flush=True)
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(ENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[agent]"], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench: installing the agent's dependencies in {ENV} failed:\n{done.stderr}")
    return str(python)


def compile_agent(python: str) -> None:
    """The agent's own modules compiled to bytecode beside their source (`__pycache__`, which git ignores),
    as they are on a clinic box: pip compiles a package's modules when it installs it, and the editable
    install here does not. Without it, a shell's PYTHONDONTWRITEBYTECODE (set on this machine) has every
    agent module compiled at each start, about 1.5 MiB more of the agent's heap than an installed agent's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([python, "-m", "compileall", "-q", "agent", "wire"], cwd=REPO, env=env, check=True)

"""Start a test file as a 2-process worker (torchrun or accelerate launch) and fail with the ranks' errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(launcher: list[str], script: str | Path, args: list[str], env: dict[str, str] | None, timeout: int) -> None:
    # the workers import the tests' helpers and the same momentseg as this process (a PYTHONPATH it runs with)
    path = os.pathsep.join([str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **(env or {})}
    cmd = [sys.executable, "-m", *launcher, str(Path(script).resolve()), *map(str, args)]
    proc = subprocess.run(cmd, env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("[rank")]
    assert proc.returncode == 0, "\n".join(errors[-30:]) or proc.stderr[-4000:]


def torchrun(script: str | Path, *args, timeout: int = 300) -> None:
    """``torchrun --nproc_per_node 2 script args…`` on this machine."""
    _run(["torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(free_port())], script, list(args), None, timeout)


def accelerate_launch(config: str, script: str | Path, *args, env: dict[str, str] | None = None,
                      timeout: int = 600) -> None:
    """``accelerate launch --config_file config --num_processes 2 script args…`` from the repository root."""
    _run(["accelerate.commands.launch", "--config_file", config, "--num_processes", "2",
          "--main_process_port", str(free_port())], script, list(args), env, timeout)


def synced_weights(folder: Path) -> dict:
    """The weights both workers saved (``rank{0,1}.safetensors``) after asserting they are equal to each other
    and to the run's final model."""
    import torch
    from safetensors.torch import load_file

    r0 = load_file(str(folder / "rank0.safetensors"))
    r1 = load_file(str(folder / "rank1.safetensors"))
    final = load_file(str(folder / "final" / "model.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"processes diverged at {k}"
        assert torch.equal(r0[k], final[k]), f"final model differs from the processes at {k}"
    return r0

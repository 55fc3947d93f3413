"""Helpers shared by several test files (imported as ``from _helpers import ...``, like
``_fid_reference``)."""
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_and_single_checkpoints(args, tmp_path, batch_per_process: int, **env_extra):
    """Run the command ``args`` (without --batch-size and --out-dir) under torchrun in 2 gloo
    processes of ``batch_per_process`` images each, then in this process with the same global
    batch; return the two checkpoints (ddp, single) once both runs succeeded and recorded that
    global batch."""
    from perceptual_ext import cli
    from perceptual_ext.train import load_checkpoint

    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "perceptual_ext.cli",
           *args, "--batch-size", str(batch_per_process), "--out-dir", str(tmp_path / "ddp")]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert cli.main(args + ["--batch-size", str(2 * batch_per_process), "--out-dir", str(tmp_path / "single")]) == 0
    ddp = load_checkpoint(str(tmp_path / "ddp" / "checkpoint.pt"))
    single = load_checkpoint(str(tmp_path / "single" / "checkpoint.pt"))
    assert ddp["global_batch"] == single["global_batch"] == 2 * batch_per_process
    return ddp, single

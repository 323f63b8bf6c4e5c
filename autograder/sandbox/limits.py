"""The limits one submission runs under (plain data: they travel with each grading job)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    timeout: float = 900.0  # whole notebook, seconds
    cell_timeout: float = 300.0  # one cell or one checked call, seconds
    memory_mb: int = 3072  # a CUDA build of torch maps ~1.3 GB on import alone
    pids: int = 128  # processes and threads in the sandbox
    output_kb: int = 512  # output kept per cell; more is cut (and a flood kills the kernel)
    disk_mb: int = 256  # the private home folder and /tmp (tmpfs, counted in memory too)
    threads: int = 1  # torch / BLAS threads: pinned, so that training is reproducible

    def to_dict(self) -> dict:
        return asdict(self)

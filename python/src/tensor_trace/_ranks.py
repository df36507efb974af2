"""Multi-process runs: rank and world size, and where rank r writes (trace-core's `ranks`).

With a world size above 1 each process writes its own ordinary run into `DIR/rank-{r}`, with
`rank.json` (`{"rank":r,"world_size":n}`) written when that directory is created; a world size of
1, or none, is a single-process run written into `DIR` itself.

Where the values come from, first found wins, each variable on its own:

| setting | read from |
|---|---|
| rank | `TENSOR_TRACE_RANK`, else torch.distributed's launcher variable `RANK` |
| world size | `TENSOR_TRACE_WORLD_SIZE`, else `WORLD_SIZE` |

trace-core and the C ABI read only the `TENSOR_TRACE_*` variables (a C/C++ engine started by
torchrun sets them from `RANK`/`WORLD_SIZE` itself).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from ._errors import ConfigError, TraceError

ENV_WORLD_SIZE = "TENSOR_TRACE_WORLD_SIZE"
# torch.distributed's launcher (torchrun, torch.distributed.launch) variables.
ENV_LAUNCHER_RANK = "RANK"
ENV_LAUNCHER_WORLD_SIZE = "WORLD_SIZE"
RANK_FILE = "rank.json"
RANK_DIR_PREFIX = "rank-"
# What Rust's `u32::from_str` accepts (the range is checked apart).
_NUMBER = re.compile(r"\+?[0-9]+")


def rank_dir_name(rank: int) -> str:
    """The name of rank `rank`'s directory inside the run directory."""
    return f"{RANK_DIR_PREFIX}{rank}"


@dataclass(frozen=True)
class RankInfo:
    """One process of a multi-process run."""

    rank: int
    world_size: int

    def dir(self, base: str) -> str:
        return os.path.join(base, rank_dir_name(self.rank))

    def to_json(self) -> str:
        # Byte-identical to trace-core's serde_json output.
        return json.dumps({"rank": self.rank, "world_size": self.world_size}, separators=(",", ":"))

    def write(self, dir: str) -> None:
        """Writes `rank.json` into `dir`, never replacing one that says something else."""
        path = os.path.join(dir, RANK_FILE)
        try:
            with open(path, "r", encoding="utf-8") as f:
                existing = json.load(f)
        except FileNotFoundError:
            existing = None
        except (OSError, ValueError) as e:
            raise TraceError(f"read {path}: {e}") from e
        if existing is not None:
            if existing == {"rank": self.rank, "world_size": self.world_size}:
                return
            raise TraceError(
                f"{path}: holds {existing}, but this process is rank {self.rank} of "
                f"{self.world_size}"
            )
        try:
            with open(path, "x", encoding="utf-8") as f:
                f.write(self.to_json() + "\n")
        except OSError as e:
            raise TraceError(f"create {path}: {e}") from e


def parse_rank(setting: str, v: str) -> int:
    s = v.strip()
    if _NUMBER.fullmatch(s) is None or int(s) > 0xFFFF_FFFF:
        raise ConfigError(setting, v, "expected a non-negative integer")
    return int(s)


def parse_world_size(setting: str, v: str) -> int:
    s = v.strip()
    if _NUMBER.fullmatch(s) is None or int(s) > 0xFFFF_FFFF:
        raise ConfigError(setting, v, "expected the number of processes, a positive integer")
    return int(s)


def from_settings(
    rank: Optional[int], world_size: Optional[int], rank_setting: str, world_setting: str
) -> Optional[RankInfo]:
    """trace-core's `RankInfo::from_settings`: checks the pair; a RankInfo only when the world
    size is above 1."""
    if world_size is None:
        return None
    if world_size == 0:
        raise ConfigError(world_setting, "0", "expected the number of processes, at least 1")
    if rank is None:
        if world_size == 1:
            return None
        raise ConfigError(
            world_setting,
            str(world_size),
            f"a world of {world_size} processes needs each process's rank in {rank_setting} "
            f"(0 to {world_size - 1})",
        )
    if rank >= world_size:
        raise ConfigError(
            rank_setting,
            str(rank),
            f"expected a rank below the world size {world_size} ({world_setting})",
        )
    return None if world_size == 1 else RankInfo(rank, world_size)


def rank_and_world_from_env(
    get: Callable[[str], Optional[str]], env_rank: str
) -> Tuple[Optional[int], Optional[int]]:
    """Rank and world size by the precedence above; checked, errors name the variable read."""

    def first(*keys: str) -> Tuple[Optional[str], Optional[str]]:
        for k in keys:
            v = get(k)
            if v is not None and v.strip():
                return k, v
        return None, None

    rank_key, rank_v = first(env_rank, ENV_LAUNCHER_RANK)
    world_key, world_v = first(ENV_WORLD_SIZE, ENV_LAUNCHER_WORLD_SIZE)
    rank = parse_rank(rank_key, rank_v) if rank_key is not None else None
    world = parse_world_size(world_key, world_v) if world_key is not None else None
    from_settings(rank, world, rank_key or env_rank, world_key or ENV_WORLD_SIZE)
    return rank, world

"""One block of a genome as plain data: its level, block function, two parents and whether it is an output."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block: its level, block function, two parent nodes, and whether it is an output."""

    level: int
    block_fn: str
    input_offsets: tuple[int, int]
    is_output: bool = False

    def to_tuple(self) -> tuple:
        """The Model Garden ``block_specs`` form ``(level, fn, (in0, in1), is_output)``."""
        return (self.level, self.block_fn, tuple(self.input_offsets), self.is_output)

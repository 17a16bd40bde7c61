"""Feature rows of windows without pandas: what the daemon, `train` and `score` pass around.

`Windows(ips, starts, values)` is one row per (client IP, window start) with the FEATURE_NAMES columns
in a float matrix. It offers the few DataFrame-like reads its users make (`len`, `.index` of
(client_ip, window_start) pairs with `get_level_values`, `to_dict("records")`, `to_numpy()`,
`column(name)`) and `to_pandas()` for the rest. It exists so that the daemon, which computes a window
every hour, never imports pandas (~45 MB of its memory for as long as it lives).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

NAMES = ("client_ip", "window_start")


class WindowIndex:
    """The (client_ip, window_start) pairs of a Windows, in row order."""

    nlevels = 2
    names = list(NAMES)

    def __init__(self, ips: list[str], starts: list[datetime]) -> None:
        self._ips, self._starts = ips, starts

    def __len__(self) -> int:
        return len(self._ips)

    def __iter__(self) -> Iterator[tuple[str, datetime]]:
        return iter(zip(self._ips, self._starts, strict=True))

    def __getitem__(self, i: int) -> tuple[str, datetime]:
        return self._ips[i], self._starts[i]

    def get_level_values(self, level: int | str) -> list[Any]:
        k = NAMES.index(level) if isinstance(level, str) else level
        return list(self._ips if k == 0 else self._starts)


class Windows:
    """Rows of window features: client IPs, window starts, a (rows x columns) float matrix."""

    def __init__(
        self, ips: Sequence[str], starts: Sequence[datetime], values: Any, columns: Sequence[str]
    ) -> None:
        self.columns = list(columns)
        self.values = np.asarray(values, dtype=float).reshape(len(ips), len(self.columns))
        self.index = WindowIndex(list(ips), list(starts))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]

    def to_numpy(self, dtype: Any = float, copy: bool = True) -> np.ndarray:
        return self.values.astype(dtype, copy=copy)

    def to_dict(self, orient: str = "records") -> list[dict[str, float]]:
        if orient != "records":
            raise ValueError("Windows.to_dict supports orient='records' only")
        return [dict(zip(self.columns, row, strict=True)) for row in self.values.tolist()]

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        index = pd.MultiIndex.from_arrays(
            [self.index.get_level_values(0), pd.DatetimeIndex(self.index.get_level_values(1))],
            names=list(NAMES),
        )
        return pd.DataFrame(self.values, columns=self.columns, index=index)

    @classmethod
    def concat(cls, parts: Sequence[Windows], columns: Sequence[str]) -> Windows:
        ips = [ip for p in parts for ip in p.index.get_level_values(0)]
        starts = [t for p in parts for t in p.index.get_level_values(1)]
        values = np.vstack([p.values for p in parts]) if parts else np.zeros((0, len(columns)))
        return cls(ips, starts, values, columns)

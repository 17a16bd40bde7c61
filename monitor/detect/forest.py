"""A fitted isolation forest as plain numpy arrays: what scoring needs, without scikit-learn.

`Forest.from_sklearn(forest)` copies the trees of a fitted `sklearn.ensemble.IsolationForest` into
flat arrays (every tree's nodes one after the other): children, split feature and threshold, and the
path length each node stands for (its depth plus c(samples in it), the average path length of an
unsuccessful search among that many points). `score_samples(m)` walks all trees at once, one tree
level per step, and returns what `IsolationForest.score_samples` returns for the same matrix (a test
checks it): the rows are cast to float32 as scikit-learn's trees do, and compared with the float64
thresholds. `arrays()` / `from_arrays()` are the saved form (an .npz, read without pickle).

Importing this module costs numpy only, so the daemon and `score` can load and score a model without
scikit-learn and pandas (which together add ~160 MB to a process).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ARRAYS = ("left", "right", "feature", "threshold", "path", "roots")
ROWS_PER_STEP = 4096  # rows walked at once (x 100 trees: ~3 MB per working array)


def avg_path_length(n: float) -> float:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return float(2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n)


class Forest:
    """Flat node arrays of every tree; leaves point to themselves, so a walk can run past them."""

    def __init__(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        path: np.ndarray,
        roots: np.ndarray,
        max_samples: float,
        depth: int,
        n_features: int,
    ) -> None:
        self.left, self.right, self.feature = left, right, feature
        self.threshold, self.path, self.roots = threshold, path, roots
        self.max_samples = float(max_samples)
        self.depth = int(depth)
        self.n_features = int(n_features)
        self._interleaved: np.ndarray | None = None

    @classmethod
    def from_sklearn(cls, forest: Any) -> Forest:
        lefts, rights, feats, thresholds, paths, roots = [], [], [], [], [], []
        offset = 0
        deepest = 0
        for est, cols in zip(forest.estimators_, forest.estimators_features_, strict=True):
            tree = est.tree_
            n = tree.node_count
            left = np.asarray(tree.children_left, dtype=np.int64)
            right = np.asarray(tree.children_right, dtype=np.int64)
            depth = np.zeros(n)
            for node in range(n):  # children always have larger ids than their parent
                for child in (left[node], right[node]):
                    if child != -1:
                        depth[child] = depth[node] + 1
            leaf = left == -1
            ids = np.arange(n, dtype=np.int64)
            left = np.where(leaf, ids, left) + offset
            right = np.where(leaf, ids, right) + offset
            # The tree's own feature ids index its feature subset (all features for an IsolationForest
            # with max_features=1.0): map them to the matrix's columns.
            local = np.where(leaf, 0, np.asarray(tree.feature, dtype=np.int64))
            feats.append(np.where(leaf, 0, np.asarray(cols, dtype=np.int64)[local]))
            thresholds.append(np.where(leaf, np.inf, np.asarray(tree.threshold, dtype=np.float64)))
            paths.append(depth + np.array([avg_path_length(float(k)) for k in tree.n_node_samples]))
            lefts.append(left)
            rights.append(right)
            roots.append(offset)
            offset += n
            deepest = max(deepest, int(depth.max()))
        return cls(
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(feats),
            np.concatenate(thresholds),
            np.concatenate(paths),
            np.asarray(roots, dtype=np.int64),
            float(forest.max_samples_),
            deepest,
            int(forest.n_features_in_),
        )

    def score_samples(self, m: np.ndarray) -> np.ndarray:
        """The isolation forest's score of each row of m (lower is more abnormal)."""
        x = np.ascontiguousarray(m, dtype=np.float32).astype(np.float64)  # the trees' float32 view
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns, got shape {x.shape}")
        total = np.zeros(len(x))
        trees = len(self.roots)
        children = self._children()
        for lo in range(0, len(x), ROWS_PER_STEP):
            part = x[lo : lo + ROWS_PER_STEP]
            base = np.repeat(np.arange(len(part), dtype=np.int64) * part.shape[1], trees)
            node = np.tile(self.roots, len(part))
            flat = part.ravel()
            for _ in range(self.depth):
                right = ~(
                    flat[base + self.feature[node]] <= self.threshold[node]
                )  # NaN goes right, as in sklearn
                node = children[2 * node + right]
            total[lo : lo + len(part)] = self.path[node].reshape(len(part), trees).sum(axis=1)
        denominator = trees * avg_path_length(self.max_samples)
        return np.asarray(-(2.0 ** (-total / denominator)) if denominator else -np.ones(len(x)))

    def _children(self) -> np.ndarray:
        """Left and right child of every node, interleaved: node n goes to [2n] or [2n + 1]."""
        both = self._interleaved
        if both is None:
            both = np.empty(2 * len(self.left), dtype=np.int64)
            both[0::2], both[1::2] = self.left, self.right
            self._interleaved = both
        return both

    def arrays(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in ARRAYS}
        out["shape"] = np.array([self.max_samples, self.depth, self.n_features], dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> Forest:
        shape = np.asarray(arrays["shape"], dtype=np.float64)
        parts = {name: np.asarray(arrays[name]) for name in ARRAYS}
        forest = cls(**parts, max_samples=shape[0], depth=int(shape[1]), n_features=int(shape[2]))
        forest._check()
        return forest

    def _check(self) -> None:
        """Refuse arrays that do not make a forest (a walk must stay inside the node arrays)."""
        n = len(self.left)
        if not (len(self.right) == len(self.feature) == len(self.threshold) == len(self.path) == n) or not n:
            raise ValueError("the node arrays differ in length")
        for name in ("left", "right", "roots"):
            a = getattr(self, name)
            if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= n:
                raise ValueError(f"{name} points outside the node arrays")
        if (
            self.feature.dtype.kind not in "iu"
            or self.feature.min() < 0
            or self.feature.max() >= self.n_features
        ):
            raise ValueError("a split feature is outside the matrix")
        if not 0 <= self.depth <= 64:
            raise ValueError(f"implausible tree depth {self.depth}")


def pack(
    trees: Forest,
    threshold: float,
    n_windows: int,
    p50: np.ndarray,
    p99: np.ndarray,
    source_p99: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """A detector's learned state as named arrays (monitor.detect.model saves them as an .npz)."""
    ips = sorted(source_p99)
    width = len(p50)
    out = {f"tree_{k}": v for k, v in trees.arrays().items()}
    out.update(
        threshold=np.array(threshold, dtype=np.float64),
        n_windows=np.array(n_windows, dtype=np.int64),
        p50=np.asarray(p50, dtype=np.float64),
        p99=np.asarray(p99, dtype=np.float64),
        source_ips=np.array(ips, dtype=str) if ips else np.zeros(0, dtype="<U1"),
        source_p99=np.array([source_p99[ip] for ip in ips], dtype=np.float64).reshape(-1, width),
    )
    return out


def unpack(arrays: Any, width: int) -> dict[str, Any]:
    """The learned attributes (trees_, threshold_, n_windows_, p50_, p99_, source_p99_) of `pack`'s
    arrays, checked against the detector's number of features; ValueError or KeyError if they do not fit."""
    trees = Forest.from_arrays({k[5:]: arrays[k] for k in arrays if k.startswith("tree_")})
    if trees.n_features != width:
        raise ValueError(f"the forest splits {trees.n_features} features, the detector has {width}")
    ips = [str(ip) for ip in np.asarray(arrays["source_ips"]).tolist()]
    own = np.asarray(arrays["source_p99"], dtype=np.float64).reshape(len(ips), width)
    return {
        "trees_": trees,
        "threshold_": float(arrays["threshold"]),
        "n_windows_": int(arrays["n_windows"]),
        "p50_": np.asarray(arrays["p50"], dtype=np.float64).reshape(width),
        "p99_": np.asarray(arrays["p99"], dtype=np.float64).reshape(width),
        "source_p99_": {ip: own[i] for i, ip in enumerate(ips)},
    }

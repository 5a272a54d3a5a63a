"""The CPU backbone: hashed features of a prefix text, logistic regression (scikit-learn, SGD).

Trains in seconds on two cores and needs nothing beyond the default install.
Features are read from the text of :func:`evoagent.rm.text.prefix_text` only
(so a served model sees what a campaign's does): the last step's action
tokens and bigrams; its observation's shape (error, empty, rows and columns
seen, numeric); the step index, errors so far, a repeated action; and
crosses of the question's words with the SQL keywords of the last action and
with the result's shape, which are what carries over to databases never seen
in training ("how many" with ``count``, "and" with two columns). Each
feature name is hashed (CRC-32) into ``2**bits`` slots.

Weights are saved as a NumPy ``.npz`` of plain arrays and read back with
``allow_pickle=False``: a model directory is untrusted input, and nothing in
it is ever unpickled.
"""
from __future__ import annotations

import functools
import itertools
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evoagent.rm.text import SUBMIT, SUBMITTED

__all__ = ["HashedLogistic", "features", "parse"]

WEIGHTS = "weights.npz"
_STEP = re.compile(r"step (\d+) (action|observation): (.*)")
_OMITTED = re.compile(r"\((\d+) earlier steps omitted\)")
_SQL_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|[a-z_][a-z0-9_]*|\d+(?:\.\d+)?|[<>!=]=?|[*(),.]")
_WORD = re.compile(r"[a-z]+")
_NUMERIC = re.compile(r"-?[\d.]+(?:e-?\d+)?")
_KEYWORDS = frozenset(["count", "avg", "sum", "max", "min", "group", "order", "desc", "asc", "limit", "distinct", "join", "where", "having", "like", "not", "union", "intersect", "except", "between", "and", "or", "in", "<", ">", "=", "!=", ">=", "<=", "*"])
_STOP = frozenset(["the", "a", "an", "of", "in", "on", "for", "to", "is", "are", "was", "were", "do", "does", "did", "that", "this", "with", "by", "from", "their", "its", "as", "be", "at", "me", "please"])


@dataclass(frozen=True)
class Parsed:
    """A prefix text read back: question and the visible steps (action, observation)."""

    question: str
    n_steps: int
    steps: tuple[tuple[str, str], ...]
    terminal: bool = False  # submitted after the last step (the submit itself is not among ``steps``)


def parse(text: str) -> Parsed:
    """Read a ``prefix_text`` back into its fields (lines it does not know are ignored)."""
    question, omitted = "", 0
    acts: dict[int, list[str]] = {}
    for line in text.split("\n"):
        if line.startswith("question: "):
            question = line[10:]
        elif m := _STEP.match(line):
            acts.setdefault(int(m.group(1)), ["", ""])[0 if m.group(2) == "action" else 1] = m.group(3)
        elif m := _OMITTED.fullmatch(line):
            omitted = int(m.group(1))
    steps = tuple((a, o) for _, (a, o) in sorted(acts.items()))
    n = max(max(acts) if acts else 0, omitted + len(steps))
    if steps and steps[-1] == (SUBMIT, SUBMITTED):
        return Parsed(question, n - 1, steps[:-1], terminal=True)
    return Parsed(question, n, steps)


def _shape(obs: str) -> dict[str, Any]:
    """Error / empty / rows / columns / numeric, from an observation's visible text."""
    err = obs.lower().startswith("error")
    rows = obs.count("), (") + 1 if obs.startswith("[(") else 0
    first = obs[2:].split("), (", 1)[0] if rows else ""
    cols = first.count(", ") + 1 if rows else 0
    numeric = bool(rows) and bool(_NUMERIC.fullmatch(first.strip(", ")))
    bucket = "0" if not rows else "1" if rows == 1 else "2-5" if rows <= 5 else "6-20" if rows <= 20 else "21+"
    return {"err": err, "empty": obs.strip() in ("[]", ""), "rows": bucket, "cols": min(cols, 5),
            "numeric": numeric, "clipped": obs.endswith(" …")}


def features(text: str) -> dict[str, float]:
    """Named features of one prefix text (names are hashed by the model). A submitted prefix has
    every feature twice, once more under ``T|``: what ends an episode well is not what starts one
    well (a first ``DESC t`` leads to success when more follows, and to failure when submitted)."""
    p = parse(text)
    out = _step_features(p)
    if p.terminal:
        out.update({f"T|{k}": v for k, v in list(out.items())})
        out["terminal"] = 1.0
    return out


def _step_features(p: Parsed) -> dict[str, float]:
    out: dict[str, float] = {f"n={min(p.n_steps, 10)}": 1.0, "nlog": math.log1p(p.n_steps)}
    if not p.steps:
        return out
    action, obs = p.steps[-1]
    tokens = ["<str>" if t[0] in "'\"" else "<num>" if t[0].isdigit() else t for t in _SQL_TOKEN.findall(action.lower())]
    for t in set(tokens):
        out[f"a:{t}"] = 1.0
    for a, b in set(itertools.pairwise(tokens)):
        out[f"a2:{a} {b}"] = 1.0
    out[f"verb:{tokens[0] if tokens else ''}"] = 1.0
    shape = _shape(obs)
    shape_key = "err" if shape["err"] else f"r{shape['rows']}c{shape['cols']}{'n' if shape['numeric'] else ''}"
    out[f"shape:{shape_key}"] = 1.0
    for k in ("err", "empty", "numeric", "clipped"):
        out[k] = float(shape[k])
    errors = sum(o[:5].lower() == "error" for _, o in p.steps)
    out["err_frac"] = errors / len(p.steps)
    out["prev_err"] = float(len(p.steps) > 1 and p.steps[-2][1][:5].lower() == "error")
    out["repeat"] = float(any(a == action for a, _ in p.steps[:-1]))
    words = _WORD.findall(p.question.lower())
    content = {w for w in words if len(w) > 3 and w not in _STOP}
    seen = (action + " " + obs).lower()
    out["qcover"] = sum(w[:5] in seen for w in content) / len(content) if content else 0.0
    lead = " ".join(words[:2])
    out[f"lead:{lead}|{shape_key}"] = 1.0
    kws = _KEYWORDS.intersection(tokens)
    for w in set(words) - _STOP:
        out[f"q:{w}|{shape_key}"] = 1.0
        for k in kws:
            out[f"x:{w}|{k}"] = 1.0
    return out


@functools.lru_cache(maxsize=1 << 16)  # names repeat; at most ~64 MB even for 1,000-character tokens
def _slot(name: str, bits: int) -> int:
    return zlib.crc32(name.encode("utf-8", "replace")) & ((1 << bits) - 1)


def design_matrix(texts: Sequence[str], bits: int) -> Any:
    """The sparse (CSR) matrix of hashed features, one row per text."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for text in texts:
        row = features(text)
        indices.extend([_slot(name, bits) for name in row])
        data.extend(row.values())
        indptr.append(len(indices))
    x = csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                    np.asarray(indptr, dtype=np.int64)), shape=(len(texts), 1 << bits))
    x.sum_duplicates()  # two names hashed to one slot add up
    return x


class HashedLogistic:
    """Logistic regression over hashed features; ``score_texts`` is sigmoid(w . x + b)."""

    kind = "hashed-logistic"

    def __init__(self, coef: np.ndarray, intercept: float, bits: int):
        self.coef, self.intercept, self.bits = coef, float(intercept), bits

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[float], weights: Sequence[float], *,
              bits: int = 18, alpha: float = 1e-4, epochs: int = 20, seed: int = 0) -> HashedLogistic:
        """Fit on soft labels: each text is a positive with weight w*p and a negative with weight w*(1-p).

        Stochastic gradient descent on the log-loss (L2 ``alpha``, a fixed number of ``epochs``,
        seeded): seconds on two cores where liblinear and lbfgs took minutes on the main job's store."""
        from scipy.sparse import vstack
        from sklearn.linear_model import SGDClassifier

        x = design_matrix(texts, bits)
        p, w = np.asarray(labels, dtype=np.float64), np.asarray(weights, dtype=np.float64)
        y = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
        sw = np.concatenate([w * p, w * (1 - p)])
        keep = sw > 0
        # L2 no weaker than 1/n: SGD's step sizes (1 / (alpha t)) otherwise saturate small data sets
        fit = SGDClassifier(loss="log_loss", alpha=max(alpha, 1.0 / max(len(p), 1)), max_iter=epochs, tol=None,
                            random_state=seed)
        fit.fit(vstack([x, x]).tocsr()[keep], y[keep], sample_weight=sw[keep])
        return cls(fit.coef_[0].astype(np.float32), float(fit.intercept_[0]), bits)

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """P(success) of each prefix text, in one sparse matrix product."""
        if not texts:
            return []
        z = design_matrix(texts, self.bits) @ self.coef.astype(np.float64) + self.intercept
        return [float(v) for v in 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))]

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the weights; returns the config entries that describe them."""
        np.savez_compressed(folder / WEIGHTS, coef=self.coef, intercept=np.asarray([self.intercept]))
        return {"bits": self.bits, "weights": WEIGHTS}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> HashedLogistic:
        """Read weights written by :meth:`save` (plain arrays only: ``allow_pickle=False``)."""
        bits = config.get("bits")
        if not isinstance(bits, int) or not 8 <= bits <= 24:
            raise ValueError("config 'bits' must be an integer within 8..24")
        expected = {"coef": (1 << bits,), "intercept": (1,)}
        _check_headers(folder / WEIGHTS, expected)  # before anything is allocated
        with np.load(folder / WEIGHTS, allow_pickle=False) as z:
            coef, intercept = z["coef"], z["intercept"]
        if coef.shape != expected["coef"] or intercept.shape != (1,) or not np.isfinite(coef).all():
            raise ValueError(f"{WEIGHTS} does not hold {1 << bits} finite weights")
        return cls(coef.astype(np.float32), float(intercept[0]), bits)


def _check_headers(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Each array's ``.npy`` header declares the expected shape and a float dtype: a hostile
    file's header could otherwise make ``np.load`` allocate whatever it declares."""
    import zipfile

    fmt = np.lib.format
    with zipfile.ZipFile(path) as zf:
        if sorted(zf.namelist()) != sorted(f"{name}.npy" for name in expected):
            raise ValueError(f"{WEIGHTS} must hold exactly the arrays {', '.join(sorted(expected))}")
        for name, shape in expected.items():
            with zf.open(f"{name}.npy") as fh:
                version = fmt.read_magic(fh)
                read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"{WEIGHTS}: {name} has .npy format version {version}")
                declared, _, dtype = read(fh)
            if declared != shape or dtype not in (np.dtype("<f4"), np.dtype("<f8")):
                raise ValueError(f"{WEIGHTS}: {name} is {dtype} {declared}, not float {shape}")

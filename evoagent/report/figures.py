"""The report's charts: Matplotlib figures written as inline SVG (no script, no network, opens at once).

Each function takes rows from :mod:`evoagent.report.data` and returns one
``<svg>`` element as text. Text in the SVG (operator and model names come from
the store) is XML-escaped by Matplotlib and drawn literally: every figure is
built under ``STYLE``, which turns off mathtext (``$...$`` in a model's name is
text, not a formula Matplotlib would parse and could fail on) and TeX. Output
is deterministic (fixed ids, no date), so the same store gives the same report.
Scores may be anything a store holds: non-finite ones are left out of the
calibration bins and AUC, finite ones beyond ±``PLOTTABLE`` out of the bins
(no axis spans ±1e308); the legend says how many.
"""
from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Iterable
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d"]
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "evoagent-report", "font.size": 10, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6", "axes.axisbelow": True,
         "text.parse_math": False, "text.usetex": False}
Row = dict[str, Any]
PLOTTABLE = 1e15  # scores beyond ±this are left out of the calibration bins (the legend counts them)


def _styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Build the whole figure under ``STYLE``: text objects read ``text.parse_math`` when made."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def to_svg(fig: Figure) -> str:
    """The figure as one ``<svg>`` element (XML prolog and doctype dropped)."""
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Figure, list[Axes]]:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    return fig, axes


def _label(name: Any) -> str:
    return "(none)" if name is None else str(name)


def _colors(names: Iterable[Any]) -> dict[Any, str]:
    return {n: COLORS[i % len(COLORS)] for i, n in enumerate(dict.fromkeys(names))}


def _generations(ax: Axes, gens: Iterable[Any]) -> None:
    ticks = sorted({g for g in gens if g is not None})
    if ticks:
        ax.set_xticks(ticks)
    ax.set_xlabel("generation")


def _legend(ax: Axes) -> None:
    """The legend to the right of the plot, never over the data (one series too: it names the operator)."""
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ax.legend(handles, labels, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _from_zero(ax: Axes, top: float | None = None) -> None:
    """A rate's axis starts at 0 (and ends at ``top`` when given, e.g. 1 for a share)."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(0.0, lo), max(hi, top) if top is not None else hi)


def _panels(width: float, row_height: float, n: int, cols: int = 2) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` plots, ``cols`` per row (a panel draws only the plots that have data)."""
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = _figure(width, row_height * rows, rows, cols)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _lines(ax: Axes, data: list[Row], key: str, colors: dict[Any, str]) -> None:
    for op in colors:
        pts = [(r["generation"], r[key]) for r in data if r["operator"] == op and r[key] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", color=colors[op], label=_label(op))


def _bars(ax: Axes, data: list[Row], key: str, colors: dict[Any, str], stacked: bool = False) -> None:
    """Bars per generation, one series per operator: side by side, or stacked."""
    ops = [op for op in colors if any(r["operator"] == op for r in data)]
    base: dict[Any, float] = {}
    width = 0.8 if stacked else 0.8 / max(1, len(ops))
    for k, op in enumerate(ops):
        pts = [(r["generation"], r[key] or 0) for r in data if r["operator"] == op and r["generation"] is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        if stacked:
            bottoms = [base.get(x, 0.0) for x in xs]
            ax.bar(xs, ys, width, bottom=bottoms, color=colors[op], label=_label(op))
            for x, y in pts:
                base[x] = base.get(x, 0.0) + y
        else:
            ax.bar([x - 0.4 + width * (k + 0.5) for x in xs], ys, width, color=colors[op], label=_label(op))


@_styled
def progress(gens: list[Row]) -> str:
    """Success (best per task), members solved and mean reward per generation; the replay-pool bound dashed."""
    fig, (ax,) = _figure(11, 3.6)
    x = [g["generation"] for g in gens]
    series = [("replay-pool bound", "bound", "--", COLORS[3]), ("success (best per task)", "success_rate", "-", COLORS[0]),
              ("members solved", "members_solved", "-", COLORS[1]), ("mean reward", "mean_reward", ":", COLORS[2])]
    if len(gens) == 1:  # one round (rro, ipr, best_of_n, an MCTS of one generation): bars, not single points
        shown = [(name, gens[0][key], color) for name, key, _, color in series if gens[0][key] is not None]
        bars = ax.bar([n for n, _, _ in shown], [v for _, v, _ in shown], color=[c for _, _, c in shown])
        ax.bar_label(bars, fmt="%.3f", fontsize=9)
        ax.set_xlabel(f"generation {x[0]}")
    else:
        for name, key, style, color in series:
            pts = [(g, r[key]) for g, r in zip(x, gens) if r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=color, label=name, linewidth=2)
        _generations(ax, x)
    ax.set_ylabel("share / reward")
    ax.set_title("Progress per generation", loc="left")
    _from_zero(ax, 1.0)
    _legend(ax)
    return to_svg(fig)


@_styled
def operators(ops: list[Row]) -> str:
    """Children, their success rate, mean gain over the best parent and USD per reward, per operator and
    generation; a campaign of one generation (a one-round strategy) as bars per operator."""
    colors = _colors(r["operator"] for r in ops)
    one_round = len({r["generation"] for r in ops}) <= 1
    plots: list[tuple[str, Any]] = [
        ("children", lambda ax: _bars(ax, ops, "children", colors, stacked=False)),
        ("success rate of children", lambda ax: (_bars if one_round else _lines)(ax, ops, "success_rate", colors)),
        ("mean reward gain over best parent", lambda ax: (_bars if one_round else _lines)(ax, ops, "mean_gain", colors)),
    ]
    if any(r["usd_per_reward"] for r in ops):
        spent = [r for r in ops if r["usd_per_reward"] is not None]
        plots.append(("USD per unit of reward gained", lambda ax: _bars(ax, spent, "usd_per_reward", colors, stacked=False)))
    fig, axes = _panels(11, 3.2, len(plots))
    for ax, (title, draw) in zip(axes, plots):
        draw(ax)
        ax.set_title(title, loc="left")
        _generations(ax, (r["generation"] for r in ops))
    _from_zero(axes[1], 1.0)
    axes[2].axhline(0, color="#999", linewidth=0.8)
    for ax in axes:
        _legend(ax)
    fig.suptitle("Operators", x=0.01, ha="left", fontweight="bold")
    return to_svg(fig)


@_styled
def costs(cost: dict[str, Any]) -> str:
    """Environment steps and seconds, dollars and tokens (direct, batch, cache reads) per generation;
    the LLM plots only when the store has LLM calls."""
    work, llm = cost["work"], cost["llm"]
    colors = _colors([r["operator"] for r in work] + [r["operator"] for r in llm])
    plots: list[tuple[str, Any]] = []
    if work:
        plots += [("environment steps by operator", lambda ax: _bars(ax, work, "env_steps", colors, stacked=True)),
                  ("work seconds by operator", lambda ax: _bars(ax, work, "seconds", colors, stacked=True))]
    if llm:
        kinds = {"direct": ("tokens", False), "batch": ("tokens", True), "cache reads": ("cache_read_tokens", None)}
        tokens = [{"generation": r["generation"], "operator": name, "n": r[key]}
                  for name, (key, batched) in kinds.items()
                  for r in _sum_by([x for x in llm if batched is None or x["batched"] == batched], ("generation",), key)]
        usd = _sum_by(llm, ("generation", "operator"), "cost_usd")
        plots += [("USD by operator", lambda ax: _bars(ax, usd, "cost_usd", colors, stacked=True)),
                  ("tokens: direct, batch, cache reads", lambda ax: _bars(ax, tokens, "n", _colors(kinds), stacked=False))]
    fig, axes = _panels(11, 3.2, len(plots))
    for ax, (title, draw) in zip(axes, plots):
        draw(ax)
        ax.set_title(title, loc="left")
        _generations(ax, (r["generation"] for r in work + llm))
        _legend(ax)
    fig.suptitle("Cost", x=0.01, ha="left", fontweight="bold")
    return to_svg(fig)


def _sum_by(data: list[Row], keys: tuple[str, ...], value: str) -> list[Row]:
    out: dict[tuple[Any, ...], Row] = {}
    for r in data:
        k = tuple(r[x] for x in keys)
        acc = out.setdefault(k, {**dict(zip(keys, k)), value: 0})
        acc[value] += r[value] or 0
    return list(out.values())


def auc(scored: list[tuple[float, bool]]) -> float | None:
    """Area under the ROC curve: the chance a solved trajectory outscores an unsolved one (ties count half)."""
    n_pos = sum(1 for _, y in scored if y)
    n_neg = len(scored) - n_pos
    if not n_pos or not n_neg:
        return None
    ordered = sorted(s for s, _ in scored)
    rank: dict[float, float] = {}
    i = 0
    while i < len(ordered):  # average rank of each distinct score (Mann-Whitney U)
        j = i
        while j < len(ordered) and ordered[j] == ordered[i]:
            j += 1
        rank[ordered[i]] = (i + j + 1) / 2
        i = j
    u = sum(rank[s] for s, y in scored if y) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def calibration(scored: list[tuple[float, bool]], bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean score, share solved, count) per equal-width score bin, for finite scores (any magnitude:
    positions and means are computed on scaled values, so ±1e308 neither overflows nor lands in NaN)."""
    finite = [(s, y) for s, y in scored if math.isfinite(s)]
    if not finite:
        return []
    lo, hi = min(s for s, _ in finite), max(s for s, _ in finite)
    span = hi / 2 - lo / 2  # half the range: finite for any two finite floats
    groups: dict[int, list[tuple[float, bool]]] = {}
    for s, y in finite:
        at = int((s / 2 - lo / 2) / span * bins) if span > 0 else 0
        groups.setdefault(min(at, bins - 1), []).append((s, y))
    return [(math.fsum(s / len(g) for s, _ in g), sum(y for _, y in g) / len(g), len(g))
            for _, g in sorted(groups.items())]


def _short(name: Any, width: int = 70) -> str:
    """A model label that fits under the plot: long ``kind(key=value,...)`` sources cut in the middle."""
    text = _label(name)
    return text if len(text) <= width else text[: width - 25] + "…" + text[-24:]


@_styled
def reward_models(scored: list[Row]) -> str:
    """Calibration and AUC of each reward model against the environment's verdict; scores computed vs reused."""
    models = list(dict.fromkeys(r["model"] for r in scored))
    has_reuse = any(r["reused"] is not None for r in scored)
    fig, axes = _figure(11, 3.8, 1, 2 if has_reuse else 1)
    colors = _colors(models)
    plotted: list[float] = []  # the scores in some bin: the diagonal spans them
    for k, m in enumerate(models):
        every = [(math.nan if r["score"] is None else float(r["score"]), bool(r["solved"]))
                 for r in scored if r["model"] == m]
        mine = [(v, y) for v, y in every if math.isfinite(v)]
        a = auc(mine)
        binned = [(v, y) for v, y in mine if abs(v) <= PLOTTABLE]  # an axis cannot span ±1e308
        pts = calibration(binned)
        plotted += [v for v, _ in binned]
        left_out = ""
        if len(binned) < len(every):
            left_out = f", {len(every) - len(binned)} left out of the bins"
            left_out += f" ({len(every) - len(mine)} non-finite)" if len(mine) < len(every) else ""
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colors[m],
                     label=f"{_short(m)}: AUC {'n/a' if a is None else f'{a:.3f}'}, n={len(mine)}{left_out}")
        if has_reuse:
            reused = sum(1 for r in scored if r["model"] == m and r["reused"])
            w = 0.8 / len(models)
            axes[1].bar([i - 0.4 + w * (k + 0.5) for i in (0, 1)], [len(mine) - reused, reused], w,
                        color=colors[m], label=_label(m))
    lo, hi = min([0.0, *plotted]), max([1.0, *plotted])
    axes[0].plot([lo, hi], [0, 1] if (lo, hi) == (0.0, 1.0) else [lo, hi], "--", color="#999", linewidth=1,
                 label="perfectly calibrated" if (lo, hi) == (0.0, 1.0) else "score = share")
    axes[0].set(title="calibration against the environment's verdict", xlabel="mean score in bin",
                ylabel="share solved", ylim=(-0.02, 1.02))
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.18), frameon=False)
    if has_reuse:
        axes[1].set(title="scores computed vs reused", xticks=[0, 1], xticklabels=["computed", "reused"])
    fig.suptitle("Reward models", x=0.01, ha="left", fontweight="bold")
    return to_svg(fig)


@_styled
def search(per_gen: list[Row]) -> str:
    """Candidates per searched step and the share of candidates that raised the process reward."""
    fig, axes = _figure(11, 3.6, 1, 2)
    x = [r["generation"] for r in per_gen]
    axes[0].bar(x, [r["candidates_per_step"] or 0 for r in per_gen], color=COLORS[0])
    pts = [(g, r["rising_share"]) for g, r in zip(x, per_gen) if r["rising_share"] is not None]
    if pts and len(pts) == 1:  # one round (rro, ipr, best_of_n): a bar, not a single point
        axes[1].bar(*zip(*pts), color=COLORS[1])
    elif pts:
        axes[1].plot(*zip(*pts), marker="o", color=COLORS[1])
    for ax, title in zip(axes, ["candidates per step", "rising share (candidates that raised the reward)"]):
        ax.set_title(title, loc="left")
        _generations(ax, x)
    _from_zero(axes[1], 1.0)
    fig.suptitle("Step-level search", x=0.01, ha="left", fontweight="bold")
    return to_svg(fig)

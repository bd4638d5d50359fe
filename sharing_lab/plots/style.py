"""One look for every figure: seaborn "paper" theme, a fixed colour per scheme, the warm-up marker, saving.

Figures are built as :class:`matplotlib.figure.Figure` objects, never through ``pyplot``'s global state, so
drawing works with any backend (Agg on a headless machine, inline in Jupyter) and nothing leaks between calls.
The theme is applied with an rc context around building and saving a figure; global settings are untouched.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import matplotlib as mpl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..fileio import atomic_write

DPI = 150
PANEL_SIZE = (3.9, 3.1)  # inches per panel

_DEEP = sns.color_palette("deep")
SCHEME_COLORS = {"ordinal": _DEEP[0], "independent": _DEEP[1], "transitionary": _DEEP[2],
                 "transitionary-schedule": _DEEP[4]}
SCHEME_LABELS = {"ordinal": "APS-O (ordinal)", "independent": "APS-I (independent)",
                 "transitionary": "APS-T (transitionary)", "transitionary-schedule": "APS-T+Φ (Φ schedule)"}
METRIC_COLORS = {"train_acc": _DEEP[7], "val_acc_mean": _DEEP[0], "val_acc_max": _DEEP[3]}
PHI_LABEL = "Φ (sharing level)"
WARMUP_LABEL = "warm-up end"
_OTHER = sns.color_palette("colorblind")


def rc() -> dict:
    """The rc parameters of the shared theme (seaborn paper context, white grid)."""
    params = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.05)}
    params.update({"figure.dpi": 100, "savefig.dpi": DPI, "legend.framealpha": 0.85, "legend.fontsize": 7,
                   "axes.titleweight": "bold"})
    return params


@contextlib.contextmanager
def themed() -> Iterator[None]:
    with mpl.rc_context(rc()):
        yield


def with_theme(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator: build the figure under the shared theme."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> Figure:
        with themed():
            return function(*args, **kwargs)

    return wrapper


def new_figure(panels: int, ncols: int | None = None, size: tuple[float, float] = PANEL_SIZE) -> tuple[Figure,
                                                                                                        list[Axes]]:
    """A constrained-layout figure with ``panels`` axes on a grid (unused grid cells removed)."""
    ncols = min(panels, ncols or panels)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.remove()
    return fig, axes[:panels]


def scheme_color(scheme: str):
    """Fixed colour of a scheme: O, I, T as in the paper; overlap:α on a purple ramp (darker = more sharing)."""
    family, _, argument = scheme.partition(":")
    if family in SCHEME_COLORS:
        return SCHEME_COLORS[family]
    if family == "overlap":
        try:
            alpha = float(argument)
        except ValueError:
            alpha = 0.5
        return mpl.colormaps["RdPu"](0.35 + 0.6 * min(max(alpha, 0.0), 1.0))
    return _OTHER[(sum(map(ord, scheme)) % 6) + 4]


SCHEME_RANKS = {"independent": 0, "overlap": 1, "ordinal": 2, "transitionary": 3, "transitionary-schedule": 4}


def scheme_order(scheme: str) -> tuple:
    """Sort key of a scheme (or family) shared by every figure: by sharing level, independent (Φ minimum),
    overlap by ascending α, ordinal (Φ maximum), then transitionary (which moves from ordinal towards
    independent), then any other scheme by name."""
    family, _, argument = scheme.partition(":")
    try:
        value = float(argument)
    except ValueError:
        value = 0.0
    return SCHEME_RANKS.get(family, len(SCHEME_RANKS)), value, scheme


def ordered(schemes: Iterable[str]) -> list[str]:
    """``schemes`` (distinct) in :func:`scheme_order`."""
    return sorted(set(schemes), key=scheme_order)


def scheme_label(scheme: str) -> str:
    if scheme in SCHEME_LABELS:
        return SCHEME_LABELS[scheme]
    if scheme.startswith("overlap:"):
        return f"overlap α={scheme.partition(':')[2]}"
    return scheme


def sequence_colors(count: int, palette: str = "flare") -> list:
    return list(sns.color_palette(palette, max(count, 1)))


def mark_warmup(ax: Axes, epochs: Sequence[float], label: bool = True) -> None:
    """Vertical dashed line(s) at the end of warm-up (in epochs), labelled once."""
    for index, epoch in enumerate(sorted({float(e) for e in epochs if e is not None and e > 0})):
        ax.axvline(epoch, color="0.35", linestyle="--", linewidth=1.0, zorder=1,
                   label=WARMUP_LABEL if label and index == 0 else None)


def merged_legend(ax: Axes, *others: Axes, **kwargs) -> None:
    """One legend for ``ax`` holding the labelled artists of ``ax`` and of its twin axes."""
    handles, labels = ax.get_legend_handles_labels()
    for other in others:
        more_handles, more_labels = other.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        legend = ax.legend(handles, labels, **kwargs)
        legend.set_zorder(10)
        for other in others:
            other.set_zorder(ax.get_zorder() - 1)
            ax.patch.set_visible(False)


def empty_panel(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4",
            wrap=True)


def format_float(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e") if value else "0"


def save(fig: Figure, out_dir: str | Path, name: str, formats: Sequence[str] = ("png", "pdf"),
         dpi: int = DPI) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` (dpi 150) and ``.pdf`` (or the given ``formats``); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in formats]
    with themed():
        for path in paths:
            fmt = path.suffix[1:]
            atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi))
    return paths

"""Charts: line charts of training metrics as standalone SVG (no plotting dependency, and the
files render on GitHub and in any browser); with matplotlib, maps of embeddings and the plots
of a sweep's study."""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 180, 36, 48  # margins: axis labels left/bottom, legend right


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def label_of(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]], title: str = "", x_label: str = "step", y_label: str = ""
) -> str:
    """SVG text of one chart; `series` is [(name, [(x, y), ...]), ...].  Non-finite
    points are skipped; a series with one point is drawn as a dot."""
    clean = [(name, [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]) for name, points in series]
    clean = [(name, points) for name, points in clean if points]
    if not clean:
        raise ValueError("nothing to plot: no finite points")
    xs = [x for _, points in clean for x, _ in points]
    ys = [y for _, points in clean for _, y in points]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = (
        min(x_ticks[0], min(xs)),
        max(x_ticks[-1], max(xs)),
        min(y_ticks[0], min(ys)),
        max(y_ticks[-1], max(ys)),
    )
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def py(y):
        return TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT + plot_w / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for tick in x_ticks:
        out.append(f'<line x1="{px(tick):.1f}" y1="{TOP}" x2="{px(tick):.1f}" y2="{TOP + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{px(tick):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{label_of(tick)}</text>')
    for tick in y_ticks:
        out.append(f'<line x1="{LEFT}" y1="{py(tick):.1f}" x2="{LEFT + plot_w}" y2="{py(tick):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{label_of(tick)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    for number, (name, points) in enumerate(clean):
        colour = PALETTE[number % len(PALETTE)]
        if len(points) == 1:
            out.append(f'<circle cx="{px(points[0][0]):.1f}" cy="{py(points[0][1]):.1f}" r="3" fill="{colour}"/>')
        else:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        legend_y = TOP + 8 + 18 * number
        out.append(
            f'<line x1="{WIDTH - RIGHT + 12}" y1="{legend_y}" x2="{WIDTH - RIGHT + 32}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{WIDTH - RIGHT + 38}" y="{legend_y + 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- embedding maps (plot --embeddings): matplotlib, PNG and SVG ------------------------------


def sample_positions(count: int, limit: int, seed: int) -> list[int]:
    """At most `limit` of range(count), the same ones for the same (count, limit, seed), in order."""
    import random

    if limit <= 0 or count <= limit:
        return list(range(count))
    return sorted(random.Random(seed).sample(range(count), limit))


def tsne_2d(vectors, seed: int, perplexity: float = 30.0):
    """scikit-learn's t-SNE to two dimensions, PCA-initialised with a fixed random_state, so
    that the same vectors always give the same map."""
    import numpy as np
    from sklearn.manifold import TSNE

    data = np.asarray(vectors, dtype=np.float64)
    perplexity = min(perplexity, max(1.0, (len(data) - 1) / 3))
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto"
    ).fit_transform(data)


def embedding_panels(panels: list[tuple[str, object, list[str]]], path_stem: str, title: str = "") -> list[str]:
    """Draw [(panel name, 2-D points, label per point), ...] side by side, coloured by label
    (one colour per label in all panels), to PATH_STEM.png and PATH_STEM.svg; the paths.
    Written without dates or random ids, so the same input gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for _, _, names in panels for label in names})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    with matplotlib.rc_context({"svg.hashsalt": "tweetkit", "font.size": 9}):
        figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.4, 4.4), squeeze=False)
        for axis, (name, points, names) in zip(axes[0], panels):
            for label in labels:
                chosen = [i for i, n in enumerate(names) if n == label]
                if chosen:
                    axis.scatter(points[chosen, 0], points[chosen, 1], s=5, color=colours[label], label=label,
                                 alpha=0.7, linewidths=0)  # fmt: skip
            axis.set_title(name)
            axis.set_xticks([])
            axis.set_yticks([])
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[label]) for label in labels]
        figure.legend(handles, labels, loc="center right", frameon=False, markerscale=1.2)
        if title:
            figure.suptitle(title)
        figure.tight_layout(rect=(0, 0, 1 - 1.3 / figure.get_size_inches()[0], 1))
        paths = [f"{path_stem}.png", f"{path_stem}.svg"]
        for path in paths:
            metadata = {"Date": None} if path.endswith(".svg") else {"Software": None}
            figure.savefig(path + ".partial", format=path.rsplit(".", 1)[1], dpi=120, metadata=metadata)
        plt.close(figure)
    import os

    for path in paths:
        os.replace(path + ".partial", path)
    return paths


# --- sweep studies (finetune --sweep-method): Optuna's matplotlib helpers, PNG and SVG --------

STUDY_PLOTS = ("optimization_history", "param_importances")
STUDY_PLOT_FORMATS = ("png", "svg")


def study_plot_files() -> list[str]:
    """The file names plot_study writes into a sweep's directory."""
    return [f"{name}.{extension}" for name in STUDY_PLOTS for extension in STUDY_PLOT_FORMATS]


def plot_study(study, output: str, log) -> None:
    """Optimization history and parameter importances of an Optuna study, PNG and SVG."""
    import os
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the helpers are marked experimental
        for name in STUDY_PLOTS:
            try:
                axes = getattr(optuna_plots, f"plot_{name}")(study)
            except (ValueError, RuntimeError) as exc:  # importances need two completed trials that differ
                log(f"no {name.replace('_', ' ')} plot: {exc}")
                continue
            axes.figure.set_size_inches(8, 5)
            axes.figure.tight_layout()
            for extension in STUDY_PLOT_FORMATS:
                axes.figure.savefig(os.path.join(output, f"{name}.{extension}"))
            plt.close(axes.figure)

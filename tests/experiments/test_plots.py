"""The plots a run writes, checked on their matplotlib objects (axis limits, scale,
titles, labels), on made-up metrics."""

from learningchain.experiments.grid import heatmap_figure
from learningchain.experiments.report import curve_figure, curve_title


def _rows(errors, heights=None):
    heights = heights or list(range(1, len(errors) + 1))
    return [{"round": t, "height": h, "test_error": e} for t, (h, e) in enumerate(zip(heights, errors), start=1)]


def _summary(**extra):
    s = {"model": {"kind": "logistic", "inputs": 10, "classes": 2}, "holders": 30, "byzantine": 0,
         "attack": None, "aggregator": "l-nearest", "epsilon_per_round": 0.3,
         "privacy": {"mechanism": "l2-laplace", "schedule": "constant"},
         "config": {"epsilon": 0.3, "backend": "native"}}
    s.update(extra)
    return s


def test_y_axis_follows_small_errors_instead_of_a_fixed_range():
    errors = [0.09, 0.08, 0.085, 0.07, 0.075, 0.072]
    ax = curve_figure(_rows(errors), [(t, 0.071) for t in range(1, 7)], "t").axes[0]
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "linear"
    assert 0.05 < lo <= 0.07 and 0.09 <= hi < 0.11  # the curves fill the axis, not its bottom tenth


def test_errors_spanning_more_than_a_decade_get_a_log_axis():
    errors = [0.07, 0.03, 0.01, 0.006, 0.004]
    ax = curve_figure(_rows(errors), [(t, 0.005) for t in range(1, 6)], "t").axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert 0.002 < lo <= 0.004 and 0.07 <= hi < 0.1


def test_a_zero_error_still_gets_a_decade_spanning_axis_that_shows_it():
    ax = curve_figure(_rows([0.4, 0.02, 0.0]), [], "t").axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0.0


def test_title_names_dataset_model_rule_parties_privacy_and_backend():
    title = curve_title(_summary(byzantine=5, attack="gaussian"), "synthetic")
    for part in ("synthetic", "logistic", "l-nearest", "K=30", "5 Byzantine holders (gaussian)",
                 "l2-laplace eps=0.3", "native backend"):
        assert part in title, part
    assert "no DP" in curve_title(_summary(privacy={"mechanism": "none"}, epsilon_per_round=None), "x")
    eth = curve_title(_summary(backend="ethereum"), "breast cancer")
    assert "ethereum backend" in eth


def test_byzantine_miner_run_is_titled_with_its_miners_and_stops_at_the_honest_height():
    title = curve_title(_summary(byzantine_miners=6, byzantine_power=0.3, miner_attack="wrong-model"), "synthetic")
    assert "6 Byzantine miners (30% of hash power, wrong-model)" in title and "B=0" not in title
    # 10 rounds, but 3 of them were won by Byzantine miners whose blocks were refused
    heights = [1, 2, 2, 3, 4, 4, 5, 6, 6, 7]
    errors = [0.3, 0.25, 0.25, 0.2, 0.18, 0.18, 0.16, 0.15, 0.15, 0.14]
    fig = curve_figure(_rows(errors, heights), [(t, 0.1) for t in range(1, 11)], title)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0, 7)
    assert all(max(line.get_xdata()) <= 7 for line in ax.get_lines())
    assert ax.get_title() == title


def _grid_rows():
    rows = []
    for attack in ("none", "gaussian", "sign-flip"):
        for rule in ("l-nearest", "median", "multi-krum"):
            for fraction in ((0.0,) if attack == "none" else (0.2, 0.4)):
                rows.append({"attack": attack, "aggregator": rule, "fraction": fraction, "holders": 10,
                             "byzantine": int(fraction * 10), "status": "ok", "test_error": 0.1 + fraction})
    return rows


def test_heatmap_has_axis_titles_and_no_label_outside_the_figure():
    fig = heatmap_figure(_grid_rows(), title="synthetic grid: final test error")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2
    assert all(ax.get_xlabel() == "aggregation rule" for ax in panels)
    assert panels[0].get_ylabel() == "attack"
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    for ax in fig.axes:
        texts = ax.get_xticklabels() + ax.get_yticklabels() + [ax.xaxis.label, ax.yaxis.label, ax.title]
        for text in texts:
            if not text.get_text():
                continue
            ext = text.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, text.get_text()
            assert ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1, text.get_text()

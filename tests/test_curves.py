from dataclasses import replace

import numpy as np
import pytest

from viewal.runs.curves import (
    ResultRow,
    aggregate,
    format_table,
    fraction_to_reach,
    plot_curves,
    read_results,
    write_results,
)


def _rows():
    rows = []
    for seed in (0, 1):
        for c in range(3):
            rows.append(ResultRow("random", seed, c, 0.02 * (c + 1), 0.2 + 0.1 * c + 0.01 * seed, 10 * (c + 1), 5 + c))
            rows.append(ResultRow("view_entropy", seed, c, 0.02 * (c + 1), 0.25 + 0.15 * c, 8 * (c + 1), 4 + 2 * c))
    return rows


def test_csv_round_trip(tmp_path):
    rows = _rows()
    write_results(tmp_path / "r.csv", rows)
    back = read_results(tmp_path / "r.csv")

    def key(r):
        return r.method, r.seed, r.cycle

    for a, b in zip(sorted(back, key=key), sorted(rows, key=key), strict=True):
        assert key(a) == key(b)
        assert a.miou == pytest.approx(b.miou, abs=1e-6) and a.labelled_fraction == pytest.approx(b.labelled_fraction)
        assert (a.regions, a.frames) == (b.regions, b.frames)
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "method,seed,cycle,labelled_fraction,miou,regions,frames"


def test_cost_axes(tmp_path):
    agg = aggregate(_rows())
    np.testing.assert_allclose(agg["view_entropy"]["regions"], [8, 16, 24])
    np.testing.assert_allclose(agg["random"]["frames"], [5, 6, 7])
    # regions to reach a target, read off the regions axis: 0.25 + 0.15 c reaches 0.475 at c = 1.5 -> 20 regions
    a = agg["view_entropy"]
    assert fraction_to_reach(a["regions"], a["miou"], 0.475) == pytest.approx(20.0)
    out = plot_curves(_rows(), tmp_path / "c.png", full_miou=0.6, cost=["pixels", "regions", "frames"],
                      noise_floor=0.01)
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="cost must be one of"):
        plot_curves(_rows(), tmp_path / "d.png", cost="clicks")


def test_aggregate_mean_std():
    agg = aggregate(_rows())
    np.testing.assert_allclose(agg["random"]["miou"], [0.205, 0.305, 0.405])
    np.testing.assert_allclose(agg["random"]["miou_std"], [0.005] * 3)
    assert list(agg["view_entropy"]["n"]) == [2, 2, 2]


def test_fraction_to_reach_interpolates():
    f = fraction_to_reach([0.1, 0.2, 0.3], [0.3, 0.5, 0.6], 0.4)
    assert f == pytest.approx(0.15)
    assert np.isnan(fraction_to_reach([0.1, 0.2], [0.3, 0.35], 0.4))
    assert fraction_to_reach([0.1, 0.2], [0.5, 0.6], 0.4) == pytest.approx(0.1)


def test_table_and_plot(tmp_path):
    txt = format_table(_rows(), full_miou=0.6)
    assert "view_entropy" in txt and "random" in txt and "full-data mIoU: 60.0 %" in txt
    # view_entropy reaches 0.57 between cycle 1 (0.40) and 2 (0.55)? no: 0.55 < 0.57 -> not reached
    assert "not reached" in txt
    # a long method spec widens the method column: every row's cells start at the same column
    long = [replace(r, method="random@image:min_iterations=560") for r in _rows()[::2]]
    lines = format_table(_rows() + long, full_miou=0.6).splitlines()
    starts = {ln.index("±") for ln in lines[2:5]}
    assert len(starts) == 1 and lines[2].startswith("random ")
    assert lines[3].startswith("random@image:min_iterations=560 ")
    out = plot_curves(_rows(), tmp_path / "c.png", full_miou=0.6)
    assert out.stat().st_size > 5000


def test_plot_groups_draw_one_panel_each(tmp_path):
    import matplotlib.image as mpimg

    one = plot_curves(_rows(), tmp_path / "one.png", full_miou=0.6)
    two = plot_curves(_rows(), tmp_path / "two.png", full_miou=0.6,
                      groups=[("selection", ["random", "view_entropy"]), ("only random", ["random", "absent"])])
    h1, w1 = mpimg.imread(one).shape[:2]
    h2, w2 = mpimg.imread(two).shape[:2]
    assert h1 == h2 and w2 == 2 * w1  # two panels side by side; a method without rows is left out

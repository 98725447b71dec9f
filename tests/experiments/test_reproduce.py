"""``learningchain reproduce``: figure specs, the quick run, resume, the claims table."""

import csv

import pytest

from learningchain.errors import ConfigError
from learningchain.experiments.claims import evaluate_claims, final_error
from learningchain.experiments.reproduce import FIGURES, figure_jobs, load_figure, reproduce


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_spec_builds_valid_configs(name, tmp_path):
    spec = load_figure(name)
    full = figure_jobs(spec, quick=False, out=tmp_path)
    quick = figure_jobs(spec, quick=True, out=tmp_path)
    n_curves = sum(len(p["curves"]) for p in spec["panels"])
    assert len({(j.panel, j.curve) for j in full}) == len(quick) == n_curves
    assert len(full) >= n_curves
    assert all(j.config.resolved().rounds == 300 for j in full)
    assert all(j.config.resolved().rounds < 50 for j in quick)
    assert len({j.config.out for j in full}) == len(full)


def test_paper_settings_are_the_ones_in_the_figures(tmp_path):
    jobs = figure_jobs(load_figure("fig5"), quick=False, out=tmp_path)
    synth = [j.config.resolved() for j in jobs if j.panel == "a" and j.seed == 0]
    assert [c.byzantine for c in synth] == [0, 5, 12, 20] and {c.holders for c in synth} == {30}
    assert {j.seed for j in jobs if j.panel == "a"} == {0, 1, 2}
    mnist = [j.config.resolved() for j in jobs if j.panel == "f"]
    assert {c.holders for c in mnist} == {100} and {c.epsilon for c in mnist} == {0.3}
    fig7 = [j.config.resolved() for j in figure_jobs(load_figure("fig7"), quick=False, out=tmp_path)]
    assert {c.aggregator for c in fig7} == {"l-nearest", "multi-krum"} and all(c.no_dp for c in fig7)


def test_unknown_figure_and_bad_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown figure"):
        load_figure("fig9")
    bad = tmp_path / "f.toml"
    bad.write_text('name = "x"\npanels = [{ id = "a", title = "t", curves = [{ label = "c", warp = 1 }] }]\n')
    with pytest.raises(ConfigError, match="unknown option 'warp'"):
        figure_jobs(load_figure(str(bad)), quick=False, out=tmp_path)


@pytest.mark.slow
def test_quick_reproduction_writes_every_artifact_and_resumes(tmp_path):
    results = reproduce(["fig6"], out=tmp_path, quick=True, workers=1)
    fig = tmp_path / "fig6"
    for name in ("curves.csv", "summary.csv", "fig6-quick.png"):
        assert (fig / name).exists(), name
    rows = list(csv.DictReader(open(fig / "curves.csv")))
    curves = {(r["panel"], r["curve"]) for r in rows}
    assert ("a", "centralized baseline") in curves and ("c", "LearningChainEx (eps/T)") in curves
    assert len(results["fig6"]) == 9 and not any(r["cached"] for r in results["fig6"])
    again = reproduce(["fig6"], out=tmp_path, quick=True, workers=1)
    assert all(r["cached"] for r in again["fig6"])
    claims = evaluate_claims(again)
    assert len(claims) == 6
    assert all(c["holds"].startswith(("yes", "no", "inconclusive", "not testable")) for c in claims)
    # one seed per quick curve: a decided verdict says that the spread was not tested
    assert all(c["holds"].endswith("(1 seed: the spread is not tested)") for c in claims
               if not c["holds"].startswith("not testable"))
    mnist = [c for c in claims if "mnist" in c["where"]]
    assert all(c["holds"].startswith("not testable") for c in mnist)  # 12 noisy rounds learn nothing
    # every stated number is the one computed from the run's own curve
    lc = [r for r in again["fig6"] if r["job"].panel == "a" and r["job"].curve.startswith("LearningChain (")][0]
    assert f"{final_error(lc):.4f}" in claims[0]["our numbers"]


def _fake_result(job, err=0.2):
    cfg = job.config.resolved()
    summary = {"holders": cfg.holders, "byzantine": cfg.byzantine, "aggregator": cfg.aggregator,
               "rounds": cfg.rounds, "test_error": err, "baseline_test_error": 0.1, "epsilon_total": 1.0,
               "selected_byzantine_total": 0, "wall_seconds": 1.0, "baseline_curve": [(1, 0.1)],
               "config": cfg.to_dict()}
    return {"job": job, "summary": summary, "curve": [(1, err)], "cached": False, "seeds": 1}


def test_quick_labels_csv_and_titles_state_the_quick_runs_byzantine_counts(tmp_path):
    from learningchain.experiments.reproduce import write_figure

    spec = load_figure("fig5")
    quick = [j for j in figure_jobs(spec, quick=True, out=tmp_path) if j.panel == "c"]
    assert [j.curve for j in quick] == ["no Byzantine", "3 Byzantine", "8 Byzantine", "13 Byzantine"]
    assert all(j.panel_title.startswith("(c) MNIST (20 holders)") for j in quick)
    full = [j for j in figure_jobs(spec, quick=False, out=tmp_path) if j.panel == "c"]
    assert [j.curve for j in full] == ["no Byzantine", "17 Byzantine", "40 Byzantine", "67 Byzantine"]
    assert all("(100 holders)" in j.panel_title for j in full)
    for job in figure_jobs(spec, quick=True, out=tmp_path):
        if job.curve != "no Byzantine":
            assert job.curve == f"{job.config.resolved().byzantine} Byzantine"
    fig7 = figure_jobs(load_figure("fig7"), quick=True, out=tmp_path)
    assert {j.panel_title for j in fig7 if j.panel == "a"} == {"(a) 10% Byzantine (2 of 20)"}

    all_quick = figure_jobs(spec, quick=True, out=tmp_path)
    write_figure(spec, [_fake_result(j) for j in all_quick], tmp_path / "fig5", quick=True)
    curves = {r["curve"] for r in csv.DictReader(open(tmp_path / "fig5" / "curves.csv")) if r["panel"] == "c"}
    assert curves == {"no Byzantine", "3 Byzantine", "8 Byzantine", "13 Byzantine", "centralized baseline"}
    for row in csv.DictReader(open(tmp_path / "fig5" / "summary.csv")):
        if row["curve"] != "no Byzantine":
            assert row["curve"] == f"{row['byzantine']} Byzantine"


def test_a_label_that_states_another_byzantine_count_than_its_run_is_refused(tmp_path):
    bad = tmp_path / "f.toml"
    bad.write_text('name = "x"\n[quick]\nrounds = 2\n[[panels]]\nid = "a"\ntitle = "t"\n'
                   'curves = [{ label = "17 Byzantine", byzantine = 17, holders = 40, quick = { byzantine = 3 } }]\n')
    assert figure_jobs(load_figure(str(bad)), quick=False, out=tmp_path)[0].curve == "17 Byzantine"
    with pytest.raises(ConfigError, match="17 Byzantine.*3 Byzantine"):
        figure_jobs(load_figure(str(bad)), quick=True, out=tmp_path)
    bad.write_text('name = "x"\n[[panels]]\nid = "a"\ntitle = "t"\ncurves = [{ label = "{warp} Byzantine" }]\n')
    with pytest.raises(ConfigError, match="cannot fill in"):
        figure_jobs(load_figure(str(bad)), quick=False, out=tmp_path)


def test_an_interrupted_run_is_not_reused(tmp_path):
    import json
    from pathlib import Path

    from learningchain.experiments.reproduce import _cached

    job = figure_jobs(load_figure("fig6"), quick=True, out=tmp_path)[0]
    run = Path(job.config.out)
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("round\n1\n")
    summary = {"config": job.config.resolved().to_dict(), "rounds": 1, "interrupted": False}
    (run / "summary.json").write_text(json.dumps(summary))
    assert _cached(job) is not None
    (run / "summary.json").write_text(json.dumps(dict(summary, interrupted=True)))
    assert _cached(job) is None

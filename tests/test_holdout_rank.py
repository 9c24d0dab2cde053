"""The Koopman limit's rank chosen from the window alone (a held-out forecast), and the study that uses it."""
import numpy as np
import pytest
import torch

from koopman_tut import experiments as ex
from koopman_tut.numerics.limits import holdout_rank


def window(n_modes: int, noise: float, seed: int, n: int = 400, T: int = 40) -> torch.Tensor:
    """(n, T) theta* + sum_i mu_i^t v_i, slow real modes in [0.8, 0.97], plus a random walk of step
    ``noise`` (process noise, like minibatch SGD: it accumulates and no model can forecast it)."""
    rng = np.random.default_rng(seed)
    mu = np.linspace(0.8, 0.97, n_modes)
    V = rng.standard_normal((n, n_modes))
    t = np.arange(T)
    walk = np.cumsum(rng.standard_normal((n, T)), axis=1)
    return torch.from_numpy(rng.standard_normal((n, 1)) + V @ (mu[:, None] ** t[None, :]) + noise * walk)


@pytest.mark.parametrize("seed", range(5))
def test_noise_is_not_extrapolated_a_clean_window_keeps_its_modes(seed):
    # clean windows: exactly the modes there are (the smallest candidate holding them)
    assert holdout_rank(window(2, 0.0, seed), delays=0) == 2
    assert holdout_rank(window(6, 0.0, seed), delays=0) == 8
    # two slow modes under process noise: never the full model, which fits the walk as dynamics
    assert holdout_rank(window(2, 0.01, seed), delays=0) in (1, 2, 4, 8)


def test_holdout_rank_refuses_bad_arguments():
    W = window(2, 0.0, 0, T=12)
    with pytest.raises(ValueError, match="holdout"):
        holdout_rank(W, holdout=10, delays=0)
    with pytest.raises(ValueError, match="ranks"):
        holdout_rank(W, ranks=(0, 2), delays=0)
    with pytest.raises(ValueError, match="ranks"):
        holdout_rank(W, ranks=(), delays=0)


def test_window_scores_score_every_estimator_by_its_magnitude(monkeypatch):
    import koopman_tut as kt

    seen = []
    record = ex.record
    monkeypatch.setattr(ex, "record", lambda *a, **k: seen.append(record(*a, **k)) or seen[-1])
    s = ex.setup("digits", seed=0)
    ex.run(s, 30, seed=1)
    scores = ex.window_scores(s, 12, seed=2)
    assert list(scores) == ["GMP", "stale GMP", *ex.ESTIMATORS]
    traj = seen[0]
    expect = {"GMP": traj.snapshots[:, -1], "stale GMP": traj.snapshots[:, 0],
              "KMP": kt.estimate_limit(traj, warn=False),
              "KMP closest": kt.koopman(traj).fixed_point("closest"),
              "line a=2": 3 * traj.snapshots[:, -1] - 2 * traj.snapshots[:, 0],
              "RRE": kt.estimate_limit(traj, "rre")}
    for rule, vec in expect.items():
        got = torch.cat([scores[rule][n].reshape(-1) for n in traj.names])
        assert torch.allclose(got, vec.abs().to(got.dtype), rtol=1e-5, atol=1e-7), rule


@pytest.mark.parametrize("starts, final", [([20, 40], 200), ([20], 40), ([-5], 200)])
def test_prediction_study_refuses_windows_that_overlap_or_outlast_the_run(starts, final):
    with pytest.raises(ValueError, match="starts|final_steps"):
        ex.prediction_study([0], starts, window=30, final_steps=final)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(starts=5), TypeError, r"starts must be a list of steps"),  # 'int' object is not iterable
    (dict(starts=[0.5]), TypeError, r"starts\[0\] must be an integer >= 0"),  # named 'steps'
    (dict(window=0), ValueError, "window must be an integer >= 2"),  # after training to the first start
    (dict(window=2.5), TypeError, "window must be an integer >= 2"),  # named 'stop'
    (dict(final_steps=400.0), TypeError, "final_steps must be an integer"),  # after every window, as 'steps', 330.0
    (dict(compression=0.5), ValueError, "compression must be a finite number >= 1"),
])
def test_prediction_study_names_a_bad_argument_before_any_training(kwargs, error, words, monkeypatch):
    monkeypatch.setattr(ex, "setup", lambda *a, **k: pytest.fail("trained before checking its arguments"))
    with pytest.raises(error, match=words):
        ex.prediction_study([0], **{"starts": [0, 40], "window": 30, "final_steps": 400, **kwargs})


def test_record_names_steps_not_the_recorder_s_stop():
    s = ex.setup(seed=0, device="cpu")
    ex.run(s, 10)
    for steps in (-1, -20):  # "stop must be >= start, got stop=9, start=10" and "stop ... got -10"
        with pytest.raises(ValueError, match=f"steps must be an integer >= 0, got {steps}"):
            ex.record(s, steps)


@pytest.mark.parametrize("seeds, error, words", [(5, TypeError, r"range\(5\)"), ("01", TypeError, "list of seeds"),
                                                 ([0, 0], ValueError, "distinct"), ([], ValueError, "at least one"),
                                                 ([0, -1], ValueError, r"seeds\[1\]")])
def test_prediction_study_names_seeds_that_are_not_a_list_of_distinct_seeds(seeds, error, words):
    """A count (the notebooks' SEEDS = 5) raised 'int object is not iterable'; a seed twice counted one run twice."""
    with pytest.raises(error, match=words):
        ex.prediction_study(seeds, [0], window=30, final_steps=60)

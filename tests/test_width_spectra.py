"""koopman_tut.training.width_spectra: the width experiment's pieces (delays, runs, the study's bookkeeping)."""
import numpy as np
import pytest
import torch

from koopman_tut import data, spectra

from koopman_tut.training import width_spectra as WS


def test_delays_give_every_width_the_same_embedded_dimension():
    d = WS.delays_for((5, 10, 40), 80)
    assert d == {5: 15, 10: 7, 40: 1}
    assert len({(k + 1) * 10 * h for h, k in d.items()}) == 1
    for span in (60, 20, 0):
        with pytest.raises(ValueError, match="span"):
            WS.delays_for((5, 10, 40), span)
    for span, widths in ((80.0, (5, 10, 40)), (80, (5, 10, 40.0)), (True, (1,))):  # 80.0 gave float delays
        with pytest.raises(ValueError, match="span and widths must be integers"):
            WS.delays_for(widths, span)


def test_a_float_span_is_refused_before_any_training(monkeypatch):
    monkeypatch.setattr(WS.data, "get_datasets", lambda *a, **k: pytest.fail("it went on to load data and train"))
    with pytest.raises(ValueError, match="span=20.0"):
        WS.width_study(widths=(5, 10), seeds=(0, 1), span=20.0)


def test_width_net_has_no_biases():
    net = WS.width_net(7)
    assert [tuple(p.shape) for p in net.parameters()] == [(7, 64), (10, 7)]


def test_train_run_records_the_second_layer_every_step():
    train_set, _ = data.get_datasets("digits")
    W0, _ = WS.train_run(3, seed=1, init=0, train_set=train_set, epochs=1)
    steps = -(-len(train_set) // 60)  # batches of 60, the last one partial
    assert W0.shape == (30, steps + 1) and W0.dtype == torch.float32
    torch.manual_seed(1)
    fresh = WS.width_net(3)
    np.testing.assert_array_equal(W0[:, 0].numpy(), fresh[3].weight.detach().flatten().numpy())
    assert not torch.equal(W0[:, 1], W0[:, 0])
    W1, _ = WS.train_run(3, seed=1, init=1, train_set=train_set, epochs=1)
    rel = (W1[:, 0] - W0[:, 0]).abs() / W0[:, 0].abs()
    assert 0 < float(rel.max()) <= 1e-3 * (1 + 1e-6)  # perturbed by at most 0.1% of each weight


def test_width_study_bookkeeping():
    st = WS.width_study(widths=(2, 4), seeds=(0, 1), inits=2, epochs=1, span=4, modes=4)
    assert st.delays == {2: 1, 4: 0}
    assert all(len(v) == 2 and all(e.numel() == 4 for e in v) for v in st.spectra.values())
    assert st.between(2, 4).shape == (2,) and st.within(4).shape == (1,)
    assert st.between(2, 4)[0] == pytest.approx(spectra.wasserstein(st.spectra[2][0], st.spectra[4][0]))
    assert all(0 <= a <= 1 for v in st.test_acc.values() for a in v)
    assert "h=2-h=4" in st.table()
    with pytest.raises(ValueError, match="inits"):
        WS.width_study(inits=0)
    # the same runs at other delays, without training again: the study's own delays give its spectra back
    again = st.at_delays(st.delays)
    assert all(torch.equal(a, b) for h in st.widths for a, b in zip(again.spectra[h], st.spectra[h]))
    one = st.at_delays(0)
    assert one.delays == {2: 0, 4: 0} and not torch.equal(one.spectra[2][0], st.spectra[2][0])
    assert torch.equal(one.spectra[4][0], st.spectra[4][0])  # width 4 had 0 delays already
    with pytest.raises(ValueError, match="for every width"):
        st.at_delays({2: 1})
    with pytest.raises(ValueError, match="width 40 is not in this study"):
        st.between(2, 40)


@pytest.mark.parametrize("kwargs, match", [
    (dict(widths=(10, 10)), "widths must be distinct"), (dict(seeds=(0, 0, 1)), "seeds must be distinct"),
    (dict(seeds=3), "seeds must be a non-empty sequence"), (dict(widths=[5.0, 10]), "widths must hold integers"),
    (dict(epochs=0), "epochs must be a finite number > 0"), (dict(modes=0), "modes must be an integer >= 1"),
    (dict(widths=(5,), modes=101), "at most the embedded dimension"), (dict(seeds=()), "seeds must be a non-empty")])
def test_width_study_refuses_bad_arguments_before_training(kwargs, match, monkeypatch):
    def no_training(*args, **kw):
        raise AssertionError("trained before checking its arguments")

    monkeypatch.setattr(WS, "train_run", no_training)
    with pytest.raises(ValueError, match=match):
        WS.width_study(**{"widths": (5, 10), "seeds": (0, 1), "inits": 1, **kwargs})


def test_width_study_takes_arrays_of_widths_and_seeds(monkeypatch):
    trained = []
    monkeypatch.setattr(WS, "train_run", lambda h, seed, *a: trained.append((h, seed)) or (torch.randn(10 * h, 40), None))
    st = WS.width_study(widths=np.array([2, 4]), seeds=np.arange(2), inits=1, span=4, modes=4)
    assert st.widths == (2, 4) and st.seeds == (0, 1) and trained == [(2, 0), (2, 1), (4, 0), (4, 1)]

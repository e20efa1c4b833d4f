"""Learned (end-to-end) ensemble (spec §3.3): the reproduction's form is a temperature; the others are not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprolib.ensemble.learned import LearnedEnsemble, repro_temperature

REPRO_WEIGHTS = (1.148, 1.060, 0.890, 1.034)  # the learned scalars quoted in spec §3.3


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 16, 32, generator=g) * 2
    # maps that disagree with the network: high where p(anomaly) is low
    p = torch.softmax(logits, dim=1)[:, 1:]
    entropy = (1 - p + 0.1 * torch.rand(p.shape, generator=g)).clamp(0, 1)
    perceptual = torch.rand(p.shape, generator=g)
    distance = torch.rand(p.shape, generator=g)
    return logits, entropy, perceptual, distance


def _same_ranking(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.argsort(a.flatten(), stable=True), torch.argsort(b.flatten(), stable=True))


def test_repro_equals_temperature_scaled_softmax_and_keeps_ranking():
    logits, h, v, d = _case()
    ens = LearnedEnsemble("repro", init=REPRO_WEIGHTS)
    torch.testing.assert_close(ens.weights, torch.tensor(REPRO_WEIGHTS), rtol=1e-6, atol=1e-6)
    out = ens(logits, h, v, d)
    t = repro_temperature(REPRO_WEIGHTS)
    expected = F.log_softmax(t * logits, dim=1)
    assert float((out.detach() - expected).abs().max()) < 1e-5
    p_plain = torch.softmax(logits, dim=1)[:, 1]
    assert _same_ranking(ens.score(logits, h, v, d), p_plain)


def test_repro_map_weights_only_act_through_the_sum():
    logits, h, v, d = _case(1)
    ens = LearnedEnsemble("repro")
    with torch.no_grad():
        ref = ens(logits, h, v, d)
        other_maps = ens(logits, torch.zeros_like(h), torch.ones_like(v), d.flip(-1))
    torch.testing.assert_close(ref, other_maps, rtol=0, atol=1e-5)


def test_probability_mode_is_convex_combination_and_changes_ranking():
    logits, h, v, d = _case(2)
    ens = LearnedEnsemble("probability", init=(3.0, 1.0, 0.5, 0.5))
    score = ens.score(logits, h, v, d).detach()
    p = torch.softmax(logits, dim=1)[:, 1]
    expected = (3 * p + h[:, 0] + 0.5 * v[:, 0] + 0.5 * d[:, 0]) / 5
    torch.testing.assert_close(score, expected, rtol=0, atol=1e-5)
    assert float(score.min()) >= 0 and float(score.max()) <= 1
    assert not _same_ranking(score, p)


def test_anomaly_logit_mode_adds_maps_to_anomaly_logit_only():
    logits, h, v, d = _case(3)
    ens = LearnedEnsemble("anomaly_logit", init=(1.0, 2.0, 1.0, 1.0))
    out = ens(logits, h, v, d)
    z = logits.clone()
    z[:, 1:] += 2 * h + v + d
    torch.testing.assert_close(out, F.log_softmax(z, dim=1), rtol=0, atol=1e-5)
    assert not _same_ranking(out[:, 1], torch.softmax(logits, dim=1)[:, 1])


@pytest.mark.parametrize("mode", ["probability", "anomaly_logit", "repro"])
def test_output_is_log_probabilities_trainable_with_nll(mode):
    logits, h, v, d = _case(4)
    logits.requires_grad_(True)
    ens = LearnedEnsemble(mode)
    out = ens(logits, h, v, d)
    assert out.shape == logits.shape
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2, 16, 32), rtol=0, atol=1e-5)
    target = (h[:, 0] > 0.5).long()
    target[:, 0, 0] = 255
    loss = F.nll_loss(out, target, weight=torch.tensor([1.0, 5.0]), ignore_index=255)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None and ens.raw.grad is not None
    assert ens.raw.grad.abs().min() > 0


def test_weights_stay_non_negative_and_bad_input_raises():
    logits, h, v, d = _case(5)
    ens = LearnedEnsemble("probability")
    opt = torch.optim.SGD(ens.parameters(), lr=100.0)
    (-ens(logits, h, v, d)[:, 0].mean()).backward()
    opt.step()
    assert bool((ens.weights >= 0).all())
    with pytest.raises(ValueError, match="mode"):
        LearnedEnsemble("logit")
    with pytest.raises(ValueError, match="positive"):
        LearnedEnsemble(init=(1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="perceptual"):
        ens(logits, h, v[:, :, :8], d)

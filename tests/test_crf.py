"""structrnn.CRF against brute-force enumeration of every tag sequence on short sequences: the
score, the partition function, the likelihood and the Viterbi argmax, with masks of different
lengths, batch-first layout, reductions, errors and gradcheck."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import structrnn as sr

D64 = torch.float64
K = 3
LENGTHS = [4, 1, 3, 2]


def make_crf(batch_first: bool = False) -> sr.CRF:
    torch.manual_seed(0)
    crf = sr.CRF(K, batch_first=batch_first).double()
    with torch.no_grad():  # larger than the init range, so the transitions matter
        for p in crf.parameters():
            p.normal_()
    return crf


def brute_score(crf, emissions, tags) -> float:
    """score(y) of one sequence, straight from the definition: emissions (n, K), tags n ints."""
    s = crf.start_transitions[tags[0]] + crf.end_transitions[tags[-1]]
    s = s + sum(emissions[t, y] for t, y in enumerate(tags))
    s = s + sum(crf.transitions[a, b] for a, b in itertools.pairwise(tags))
    return float(s)


def brute_force(crf, emissions):
    """(log Z, best tag list, best score) by enumerating all K ** n tag sequences."""
    scores = {tags: brute_score(crf, emissions, tags)
              for tags in itertools.product(range(K), repeat=emissions.size(0))}
    best = max(scores, key=scores.get)
    log_z = math.log(sum(math.exp(s) for s in scores.values()))
    return log_z, list(best), scores[best]


def batch(batch_first: bool = False):
    """Emissions (T, B, K), random tags and the mask of LENGTHS (time-major unless asked)."""
    torch.manual_seed(1)
    T, B = max(LENGTHS), len(LENGTHS)
    emissions = torch.randn(T, B, K, dtype=D64)
    tags = torch.randint(K, (T, B))
    mask = torch.arange(T).unsqueeze(1) < torch.tensor(LENGTHS)
    tags[~mask] = -100  # padding the CRF must not read
    if batch_first:
        return emissions.transpose(0, 1), tags.t(), mask.t()
    return emissions, tags, mask


@pytest.mark.parametrize("batch_first", [False, True])
def test_partition_likelihood_and_viterbi_equal_enumeration(batch_first):
    crf = make_crf(batch_first)
    emissions, tags, mask = batch(batch_first)
    log_z = crf.log_partition(emissions, mask)
    llh = crf(emissions, tags, mask, reduction="none")
    decoded = crf.decode(emissions, mask)
    e_tm, t_tm = (emissions.transpose(0, 1), tags.t()) if batch_first else (emissions, tags)
    for b, n in enumerate(LENGTHS):
        want_z, want_best, _ = brute_force(crf, e_tm[:n, b])
        gold = t_tm[:n, b].tolist()
        assert log_z[b].item() == pytest.approx(want_z, abs=1e-10)
        assert llh[b].item() == pytest.approx(brute_score(crf, e_tm[:n, b], gold) - want_z,
                                              abs=1e-10)
        assert decoded[b] == want_best
        assert len(decoded[b]) == n


def test_probabilities_of_all_sequences_sum_to_one():
    crf = make_crf()
    emissions = torch.randn(3, 1, K, dtype=D64)
    total = sum(math.exp(crf(emissions, torch.tensor(tags).view(3, 1)).item())
                for tags in itertools.product(range(K), repeat=3))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_mask_none_is_all_on_and_padding_is_ignored():
    crf = make_crf()
    emissions, tags, mask = batch()
    full = torch.randint(K, tags.shape)
    assert torch.equal(crf(emissions, full, reduction="none"),
                       crf(emissions, full, torch.ones_like(mask), reduction="none"))
    # what lies past each sequence's end changes nothing
    noisy = emissions.clone()
    noisy[~mask] = 1e3
    torch.testing.assert_close(crf(noisy, tags, mask, reduction="none"),
                               crf(emissions, tags, mask, reduction="none"))
    assert crf.decode(noisy, mask) == crf.decode(emissions, mask)


def test_reductions():
    crf = make_crf()
    emissions, tags, mask = batch()
    each = crf(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(crf(emissions, tags, mask), each.sum())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="mean"), each.mean())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="token_mean"),
                               each.sum() / sum(LENGTHS))
    assert (each < 0).all()


def test_viterbi_score_is_the_best_score():
    crf = make_crf()
    emissions, _, mask = batch()
    best = crf.decode(emissions, mask)
    padded = torch.zeros(mask.shape, dtype=torch.long)
    for b, tags in enumerate(best):
        padded[: len(tags), b] = torch.tensor(tags)
    scores = crf.score(emissions, padded, mask)
    for b, n in enumerate(LENGTHS):
        assert scores[b].item() == pytest.approx(brute_force(crf, emissions[:n, b])[2], abs=1e-10)


def test_gradcheck_of_the_log_likelihood():
    crf = make_crf()
    emissions, tags, mask = batch()
    emissions.requires_grad_()
    params = [p.detach().requires_grad_() for p in crf.parameters()]
    names = [n for n, _ in crf.named_parameters()]

    def llh(e, *ps):
        return torch.func.functional_call(crf, dict(zip(names, ps, strict=True)),
                                          (e, tags, mask), {"reduction": "none"})

    assert torch.autograd.gradcheck(llh, (emissions, *params))


def test_gradient_is_expected_minus_observed_counts():
    """d log Z / d emission[t, k] is the marginal P(y_t = k): they sum to one at every step."""
    crf = make_crf()
    emissions, _, mask = batch()
    emissions.requires_grad_()
    crf.log_partition(emissions, mask).sum().backward()
    marginals = emissions.grad.sum(-1)
    torch.testing.assert_close(marginals, mask.to(D64))


def test_learns_a_transition_rule():
    """Emissions that say nothing: only the transitions can learn 'tag 1 follows tag 0'."""
    torch.manual_seed(0)
    crf = sr.CRF(2)
    tags = torch.tensor([[0, 1] * 3]).t().repeat(1, 4)  # 0 1 0 1 0 1 in every sequence
    emissions = torch.zeros(6, 4, 2)
    optimiser = torch.optim.Adam(crf.parameters(), lr=0.1)
    for _ in range(100):
        optimiser.zero_grad()
        (-crf(emissions, tags)).backward()
        optimiser.step()
    assert crf.decode(emissions) == [[0, 1] * 3] * 4


def test_errors_name_the_argument():
    crf = sr.CRF(K)
    emissions = torch.randn(4, 2, K)
    tags = torch.zeros(4, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"emissions must have shape \(\*, \*, 3\)"):
        crf(torch.randn(4, 2, 5), tags)
    with pytest.raises(ValueError, match=r"tags must have shape \(4, 2\)"):
        crf(emissions, tags[:3])
    with pytest.raises(ValueError, match="mask must have shape"):
        crf(emissions, tags, torch.ones(4, 3, dtype=torch.bool))
    hole = torch.tensor([[1, 1], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="ones then zeros"):
        crf(emissions, tags, hole)
    with pytest.raises(ValueError, match="ones then zeros"):
        crf.decode(emissions, torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        crf(emissions, tags, reduction="max")
    with pytest.raises(ValueError, match="long"):
        crf(emissions, tags.int())
    assert "num_tags=3" in repr(crf)

"""Backpropagation through time by hand (numpy) against autograd through structrnn.

The Elman network in the U, W, V formulation::

    h_t = tanh(U x_t + W h_{t-1}),   y_t = softmax(V h_t),   L = -sum_t log y_t[target_t]
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import structrnn as sr
from structrnn.sequence import RNN

T, B, I, H, K = 7, 3, 4, 5, 6


def numpy_bptt(U, W, V, xs, targets, h0):
    """xs (T, B, I), targets (T, B), h0 (B, H) -> loss, dU, dW, dV, dh0 (all by hand)."""
    hs, ys = [h0], []
    for t in range(len(xs)):
        hs.append(np.tanh(xs[t] @ U.T + hs[-1] @ W.T))
        o = hs[-1] @ V.T
        e = np.exp(o - o.max(axis=1, keepdims=True))
        ys.append(e / e.sum(axis=1, keepdims=True))
    rows = np.arange(xs.shape[1])
    loss = -sum(np.log(ys[t][rows, targets[t]]).sum() for t in range(len(xs)))
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        do = ys[t].copy()
        do[rows, targets[t]] -= 1  # d(-log softmax)/d logits = y - onehot
        dV += do.T @ hs[t + 1]
        dh = do @ V + dh_next  # from the output at t and from the step t + 1
        da = dh * (1 - hs[t + 1] ** 2)
        dU += da.T @ xs[t]
        dW += da.T @ hs[t]
        dh_next = da @ W
    return loss, dU, dW, dV, dh_next


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    return {
        "U": rng.normal(0, 0.5, (H, I)), "W": rng.normal(0, 0.5, (H, H)),
        "V": rng.normal(0, 0.5, (K, H)), "xs": rng.normal(size=(T, B, I)),
        "targets": rng.integers(0, K, (T, B)), "h0": rng.normal(0, 0.5, (B, H)),
    }


def autograd_bptt(p, run):
    """run(U, W, xs, h0) -> hidden states (T, B, H) through structrnn; autograd the rest."""
    t = {k: torch.tensor(v, requires_grad=k in ("U", "W", "V", "h0"))
         for k, v in p.items()}
    hs = run(t["U"], t["W"], t["xs"], t["h0"])
    logits = hs @ t["V"].T
    loss = F.cross_entropy(logits.reshape(T * B, K), t["targets"].reshape(-1), reduction="sum")
    loss.backward()
    return loss.item(), t["U"].grad, t["W"].grad, t["V"].grad, t["h0"].grad


def with_cell(U, W, xs, h0):
    cell = sr.RNNCell(I, H, bias=False, dtype=torch.float64)
    out, h = [], h0
    for step in range(T):
        h = torch.func.functional_call(cell, {"weight_ih": U, "weight_hh": W}, (xs[step], h))
        out.append(h)
    return torch.stack(out)


def with_rnn(force_generic):
    def run(U, W, xs, h0):
        rnn = RNN(I, H, bias=False, dtype=torch.float64, force_generic=force_generic)
        params = {"weight_ih_l0": U, "weight_hh_l0": W}
        return torch.func.functional_call(rnn, params, (xs, h0.unsqueeze(0)))[0]
    return run


@pytest.mark.parametrize("run", [with_cell, with_rnn(False), with_rnn(True)],
                         ids=["RNNCell", "RNN-fused", "RNN-generic"])
def test_autograd_equals_hand_written_bptt(problem, run):
    want = numpy_bptt(**problem)
    got = autograd_bptt(problem, run)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for name, g, w in zip(("dU", "dW", "dV", "dh0"), got[1:], want[1:]):
        np.testing.assert_allclose(g.numpy(), w, atol=1e-10, rtol=0, err_msg=name)


def test_hand_written_bptt_is_not_trivially_zero(problem):
    # The comparison above would be empty if the gradients vanished; they do not.
    _, dU, dW, dV, dh0 = numpy_bptt(**problem)
    assert min(np.abs(g).max() for g in (dU, dW, dV, dh0)) > 1e-3

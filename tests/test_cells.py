"""The cells against torch.nn's cells and against plain per-row references written here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import structrnn as sr

D64 = torch.float64
I, H = 3, 4
PAIRS = {
    "rnn_tanh": (nn.RNNCell, sr.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNNCell, sr.RNNCell, {"nonlinearity": "relu"}),
    "gru": (nn.GRUCell, sr.GRUCell, {}),
    "lstm": (nn.LSTMCell, sr.LSTMCell, {}),
}


def make(kind: str, bias: bool = True):
    torch_cls, sr_cls, extra = PAIRS[kind]
    ref = torch_cls(I, H, bias=bias, dtype=D64, **extra)
    ours = sr_cls(I, H, bias=bias, dtype=D64, **extra)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def parts(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def random_state(kind: str, rows: int, requires_grad: bool = False):
    h = torch.randn(rows, H, dtype=D64, requires_grad=requires_grad)
    if kind != "lstm":
        return h
    return h, torch.randn(rows, H, dtype=D64, requires_grad=requires_grad)


# -- one predecessor: exactly torch.nn ----------------------------------------------------------
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_matches_torch_cell_with_gradients(kind, bias, with_state):
    ref, ours = make(kind, bias)
    x = torch.randn(5, I, dtype=D64, requires_grad=True)
    state = random_state(kind, 5, requires_grad=True) if with_state else None
    got, want = parts(ours(x, state)), parts(ref(x, state))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
    wrt = [x] + (parts(state) if with_state else [])
    g_got = torch.autograd.grad(sum(t.sum() for t in got), wrt + list(ours.parameters()))
    g_want = torch.autograd.grad(sum(t.sum() for t in want), wrt + list(ref.parameters()))
    for g, w in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_split_step_equals_torch(kind):
    # project_input + combine (the path trees and the generic sequence loop take) == torch.
    ref, ours = make(kind)
    x = torch.randn(5, I, dtype=D64)
    state = random_state(kind, 5)
    got = ours.combine(ours.project_input(x), state, torch.arange(5), 5)
    for g, w in zip(parts(got), parts(ref(x, state)), strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_unbatched_matches_torch(kind):
    ref, ours = make(kind)
    x = torch.randn(I, dtype=D64)
    state = random_state(kind, 1)
    state = tuple(s[0] for s in state) if isinstance(state, tuple) else state[0]
    for s in (None, state):
        got, want = parts(ours(x, s)), parts(ref(x, s))
        for g, w in zip(got, want, strict=True):
            assert g.shape == (H,)
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_same_initialisation_draws_and_names(kind):
    torch_cls, sr_cls, extra = PAIRS[kind]
    torch.manual_seed(11)
    ref = torch_cls(I, H, **extra)
    torch.manual_seed(11)
    ours = sr_cls(I, H, **extra)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


# -- many predecessors: plain per-row references ------------------------------------------------
def weights(cell):
    b_ih = cell.bias_ih if cell.bias_ih is not None else torch.zeros_like(cell.weight_ih[:, 0])
    b_hh = cell.bias_hh if cell.bias_hh is not None else torch.zeros_like(cell.weight_hh[:, 0])
    return cell.weight_ih, cell.weight_hh, b_ih, b_hh


def ref_child_sum(cell, x, prev, index, size):
    """Row by row; Tai et al. (2015) for the LSTM, summed children for GRU and Elman."""
    W, U, bw, bu = weights(cell)
    Hs = cell.hidden_size
    hs, cs = [], []
    for n in range(size):
        kids = [j for j in range(len(index)) if int(index[j]) == n]
        xn = x[n]
        if isinstance(cell, sr.LSTMCell):
            h_prev, c_prev = prev
            h_sum = sum((h_prev[j] for j in kids), torch.zeros(Hs, dtype=D64))

            def gate(k, h, act, xn=xn):
                rows = slice(k * Hs, (k + 1) * Hs)
                return act(W[rows] @ xn + bw[rows] + U[rows] @ h + bu[rows])

            i = gate(0, h_sum, torch.sigmoid)
            g = gate(2, h_sum, torch.tanh)
            o = gate(3, h_sum, torch.sigmoid)
            c = i * g
            for j in kids:  # one forget gate per child, from that child's own h
                c = c + gate(1, h_prev[j], torch.sigmoid) * c_prev[j]
            hs.append(o * torch.tanh(c))
            cs.append(c)
        elif isinstance(cell, sr.GRUCell):
            h = sum((prev[j] for j in kids), torch.zeros(Hs, dtype=D64))
            gx, gh = W @ xn + bw, U @ h + bu
            r = torch.sigmoid(gx[:Hs] + gh[:Hs])
            z = torch.sigmoid(gx[Hs:2 * Hs] + gh[Hs:2 * Hs])
            cand = torch.tanh(gx[2 * Hs:] + r * gh[2 * Hs:])
            hs.append((1 - z) * cand + z * h)
        else:
            h = sum((prev[j] for j in kids), torch.zeros(Hs, dtype=D64))
            act = torch.tanh if cell.nonlinearity == "tanh" else torch.relu
            hs.append(act(W @ xn + bw + U @ h + bu))
    if cs:
        return torch.stack(hs), torch.stack(cs)
    return torch.stack(hs)


# 6 result rows; rows 2 and 5 have no predecessor, row 0 has three, row 4 one.
INDEX = torch.tensor([0, 3, 0, 1, 4, 0, 3])
SIZE = 6


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_many_predecessors_match_per_row_reference(kind, bias):
    _, cell = make(kind, bias)
    x = torch.randn(SIZE, I, dtype=D64)
    prev = random_state(kind, len(INDEX))
    got = cell(x, prev, index=INDEX, size=SIZE)
    want = ref_child_sum(cell, x, prev, INDEX, SIZE)
    for g, w in zip(parts(got), parts(want), strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_rows_without_predecessors_equal_zero_state(kind):
    _, cell = make(kind)
    x = torch.randn(SIZE, I, dtype=D64)
    got = parts(cell(x, random_state(kind, len(INDEX)), index=INDEX, size=SIZE))
    alone = parts(cell(x[[2, 5]], None))
    zero = parts(cell(x[[2, 5]], _zeros(kind, 2)))
    for g, a, z in zip(got, alone, zero, strict=True):
        torch.testing.assert_close(g[[2, 5]], a, atol=1e-12, rtol=0)
        torch.testing.assert_close(a, z, atol=1e-12, rtol=0)


def _zeros(kind, rows):
    z = torch.zeros(rows, H, dtype=D64)
    return (z, z.clone()) if kind == "lstm" else z


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_one_child_per_row_equals_torch_step(kind):
    # A chain is a tree with one child per node: the index path equals the torch cell.
    ref, cell = make(kind)
    x = torch.randn(4, I, dtype=D64)
    prev = random_state(kind, 4)
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = tuple(p[perm] for p in prev) if isinstance(prev, tuple) else prev[perm]
    got = cell(x, shuffled, index=perm, size=4)
    for g, w in zip(parts(got), parts(ref(x, prev)), strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_gradcheck_index_path(kind):
    _, cell = make(kind)
    x = torch.randn(SIZE, I, dtype=D64, requires_grad=True)
    prev = random_state(kind, len(INDEX), requires_grad=True)
    prev_t = parts(prev)
    params = list(cell.parameters())

    def fn(x, *tensors):
        state = tuple(tensors[:len(prev_t)]) if kind == "lstm" else tensors[0]
        return tuple(parts(cell(x, state, index=INDEX, size=SIZE)))

    assert torch.autograd.gradcheck(fn, (x, *prev_t), eps=1e-6, atol=1e-7)
    # and with respect to the weights
    names = [n for n, _ in cell.named_parameters()]

    def fn_w(*ws):
        out = torch.func.functional_call(cell, dict(zip(names, ws)), (x.detach(), prev),
                                         {"index": INDEX, "size": SIZE})
        return tuple(parts(out))

    assert torch.autograd.gradcheck(fn_w, tuple(p.detach().requires_grad_() for p in params))


# -- N-ary Tree-LSTM ----------------------------------------------------------------------------
def ref_nary(cell, x, prev, index, pos, size):
    """Per node, Tai et al. (2015) section 3.2 with slot-specific U matrices."""
    A, Hs = cell.arity, cell.hidden_size
    W, U, bw, bu = weights(cell)
    h_prev, c_prev = prev
    hs, cs = [], []
    for n in range(size):
        h_slots = [torch.zeros(Hs, dtype=D64) for _ in range(A)]
        c_slots = [torch.zeros(Hs, dtype=D64) for _ in range(A)]
        for j in range(len(index)):
            if int(index[j]) == n:
                h_slots[int(pos[j])] = h_prev[j]
                c_slots[int(pos[j])] = c_prev[j]

        def pre(w_rows, u_rows, xn=x[n], h_slots=h_slots):  # W x + sum_l U^l h_l + biases
            out = W[w_rows] @ xn + bw[w_rows] + bu[u_rows]
            for slot in range(A):
                out = out + U[u_rows, slot * Hs:(slot + 1) * Hs] @ h_slots[slot]
            return out

        i = torch.sigmoid(pre(slice(0, Hs), slice(0, Hs)))
        g = torch.tanh(pre(slice(2 * Hs, 3 * Hs), slice((1 + A) * Hs, (2 + A) * Hs)))
        o = torch.sigmoid(pre(slice(3 * Hs, 4 * Hs), slice((2 + A) * Hs, (3 + A) * Hs)))
        c = i * g
        for k in range(A):
            f_k = torch.sigmoid(pre(slice(Hs, 2 * Hs), slice((1 + k) * Hs, (2 + k) * Hs)))
            c = c + f_k * c_slots[k]
        hs.append(o * torch.tanh(c))
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


@pytest.mark.parametrize("arity", [2, 3])
def test_nary_matches_per_node_reference(arity):
    cell = sr.NaryLSTMCell(I, H, arity=arity, dtype=D64)
    # node 1 has only slot 1 filled (slot 0 missing -> zero), nodes 2 and 4 are leaves
    index = {2: [0, 0, 1, 3, 3], 3: [0, 0, 1, 3, 3, 3]}[arity]
    pos = {2: [0, 1, 1, 1, 0], 3: [0, 2, 1, 0, 2, 1]}[arity]
    index, pos = torch.tensor(index), torch.tensor(pos)
    x = torch.randn(5, I, dtype=D64)
    prev = random_state("lstm", len(index))
    got = cell(x, prev, index=index, size=5, child_index=pos)
    want = ref_nary(cell, x, prev, index, pos, 5)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


def test_nary_arity_one_is_torch_lstm_cell():
    ref = nn.LSTMCell(I, H, dtype=D64)
    cell = sr.NaryLSTMCell(I, H, arity=1, dtype=D64)
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(4, I, dtype=D64)
    prev = random_state("lstm", 4)
    for got in (cell(x, prev), cell(x, prev, index=torch.arange(4), size=4,
                                    child_index=torch.zeros(4, dtype=torch.long))):
        for g, w in zip(got, ref(x, prev), strict=True):
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


def test_nary_gradcheck():
    cell = sr.NaryLSTMCell(I, H, arity=2, dtype=D64)
    index, pos = torch.tensor([0, 0, 2]), torch.tensor([1, 0, 1])
    x = torch.randn(3, I, dtype=D64, requires_grad=True)
    h, c = random_state("lstm", 3, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, h, c: cell(x, (h, c), index=index, size=3, child_index=pos), (x, h, c))


# -- errors -------------------------------------------------------------------------------------
def test_errors_name_argument_and_shapes():
    cell = sr.LSTMCell(I, H)
    h = torch.zeros(2, H)
    with pytest.raises(ValueError, match=r"input must have shape \(\*, 3\), got \(2, 5\)"):
        cell(torch.randn(2, 5), (h, h))
    with pytest.raises(ValueError, match=r"hx\[1\] must have shape \(2, 4\), got \(2, 3\)"):
        cell(torch.randn(2, I), (h, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"hx must have shape \(2, 4\), got \(3, 4\)"):
        sr.GRUCell(I, H)(torch.randn(2, I), torch.zeros(3, H))
    with pytest.raises(ValueError, match=r"index has entry 5 but only 3 result rows.*at least"):
        cell(torch.randn(3, I), (h, h), index=torch.tensor([0, 5]), size=3)
    with pytest.raises(ValueError, match="negative"):
        cell(torch.randn(3, I), (h, h), index=torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"index must have shape \(2,\)"):
        cell(torch.randn(3, I), (h, h), index=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="size=2 but input has 3 rows"):
        cell(torch.randn(3, I), (h, h), index=torch.tensor([0, 1]), size=2)
    with pytest.raises(ValueError, match="pass size"):
        cell(None, (h, h), index=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        cell(torch.randn(3, I), (h, h), index=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="child_index"):
        sr.NaryLSTMCell(I, H)(torch.randn(3, I), (h, h), index=torch.tensor([0, 1]), size=3)
    with pytest.raises(ValueError, match="child_index has entry 2"):
        sr.NaryLSTMCell(I, H)(torch.randn(3, I), (h, h), index=torch.tensor([0, 1]), size=3,
                              child_index=torch.tensor([0, 2]))


def test_unbatched_errors():
    cell = sr.GRUCell(I, H)
    with pytest.raises(ValueError, match=r"input must have shape \(\*, 3\), got \(1, 5\)"):
        cell(torch.randn(5), torch.zeros(H))
    with pytest.raises(ValueError, match=r"hx must be 1-D \(hidden_size,\) = \(4,\) with "
                                         r"unbatched input, got \(2, 4\)"):
        cell(torch.randn(I), torch.zeros(2, H))  # unbatched input with a batched state


def test_no_input_rows_use_biases():
    # x=None (e.g. tree nodes without a token) must act as x = 0.
    for kind in ("gru", "lstm"):
        _, cell = make(kind)
        prev = random_state(kind, len(INDEX))
        got = cell(None, prev, index=INDEX, size=SIZE)
        want = cell(torch.zeros(SIZE, I, dtype=D64), prev, index=INDEX, size=SIZE)
        for g, w in zip(parts(got), parts(want), strict=True):
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


def test_no_input_rnn_cell_uses_input_bias():
    _, cell = make("rnn_tanh")
    prev = random_state("rnn_tanh", len(INDEX))
    got = cell(None, prev, index=INDEX, size=SIZE)
    want = cell(torch.zeros(SIZE, I, dtype=D64), prev, index=INDEX, size=SIZE)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_subclass_combine_is_used_without_index():
    class Halved(sr.GRUCell):
        def combine(self, x_proj, prev, index, size):
            return super().combine(x_proj, prev, index, size) / 2

    cell = Halved(I, H, dtype=D64)
    x, h = torch.randn(2, I, dtype=D64), torch.randn(2, H, dtype=D64)
    plain = sr.GRUCell(I, H, dtype=D64)
    plain.load_state_dict(cell.state_dict())
    torch.testing.assert_close(cell(x, h), plain(x, h) / 2)

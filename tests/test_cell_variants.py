"""The cell variants of the lessons (peephole LSTM, CIFG LSTM, minimal gated unit) against
per-step references written here from the papers' equations, on one step, many predecessors,
sequences, trees and graphs, and gradcheck in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import structrnn as sr
from structrnn.levels.run import run_up
from structrnn.sequence import LSTM, Recurrent

D64 = torch.float64
I, H = 3, 4
VARIANTS = ["peephole", "cifg", "mgu"]
CLASSES = {"peephole": sr.PeepholeLSTMCell, "cifg": sr.CIFGLSTMCell, "mgu": sr.MGUCell}
sig, tanh = torch.sigmoid, torch.tanh


def make(kind: str, bias: bool = True, input_size: int = I):
    torch.manual_seed(3)
    cell = CLASSES[kind](input_size, H, bias=bias, dtype=D64)
    with torch.no_grad():  # non-zero biases even with bias=False's missing ones ignored
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def blocks(cell, k: int):
    """Gate block ``k`` of the cell: (W (H, I), U (H, H), b (H,)) with both biases summed."""
    rows = slice(k * H, (k + 1) * H)
    b = torch.zeros(H, dtype=D64)
    for bias in (cell.bias_ih, cell.bias_hh):
        if bias is not None:
            b = b + bias[rows]
    return cell.weight_ih[rows], cell.weight_hh[rows], b


# -- references: one result row from its input and a list of predecessor states ---------------
def ref_peephole(cell, x, preds):
    """Gers & Schmidhuber (2000); Child-Sum over predecessors (h_k, c_k)."""
    (Wi, Ui, bi), (Wf, Uf, bf), (Wg, Ug, bg), (Wo, Uo, bo) = (blocks(cell, k) for k in range(4))
    p_i, p_f, p_o = cell.weight_peephole
    zero = torch.zeros(H, dtype=D64)
    h_sum = sum((h for h, _ in preds), zero)
    c_sum = sum((c for _, c in preds), zero)
    i = sig(Wi @ x + Ui @ h_sum + p_i * c_sum + bi)
    g = tanh(Wg @ x + Ug @ h_sum + bg)
    c = i * g
    for h_k, c_k in preds:
        c = c + sig(Wf @ x + Uf @ h_k + p_f * c_k + bf) * c_k
    o = sig(Wo @ x + Uo @ h_sum + p_o * c + bo)
    return o * tanh(c), c


def ref_cifg(cell, x, preds):
    """Greff et al. (2017): input gate 1 - f; Child-Sum over predecessors."""
    (Wf, Uf, bf), (Wg, Ug, bg), (Wo, Uo, bo) = (blocks(cell, k) for k in range(3))
    h_sum = sum((h for h, _ in preds), torch.zeros(H, dtype=D64))
    f = sig(Wf @ x + Uf @ h_sum + bf)
    c = (1 - f) * tanh(Wg @ x + Ug @ h_sum + bg)
    for h_k, c_k in preds:
        c = c + sig(Wf @ x + Uf @ h_k + bf) * c_k
    o = sig(Wo @ x + Uo @ h_sum + bo)
    return o * tanh(c), c


def ref_mgu(cell, x, preds):
    """Zhou et al. (2016); the predecessors' states summed."""
    (Wf, Uf, bf), (Wn, Un, bn) = (blocks(cell, k) for k in range(2))
    h = sum(preds, torch.zeros(H, dtype=D64))
    f = sig(Wf @ x + Uf @ h + bf)
    n = tanh(Wn @ x + Un @ (f * h) + bn)
    return (1 - f) * h + f * n


REFS = {"peephole": ref_peephole, "cifg": ref_cifg, "mgu": ref_mgu}


def is_lstm(kind: str) -> bool:
    return kind != "mgu"


def random_state(kind: str, rows: int, requires_grad: bool = False):
    h = torch.randn(rows, H, dtype=D64, requires_grad=requires_grad)
    if not is_lstm(kind):
        return h
    return h, torch.randn(rows, H, dtype=D64, requires_grad=requires_grad)


def state_row(kind, state, j):
    return (state[0][j], state[1][j]) if is_lstm(kind) else state[j]


def parts(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def reference(kind, cell, x, prev, index, size):
    """Every result row from the reference, row by row (a Python loop: the reference only)."""
    out = []
    for n in range(size):
        kids = [] if prev is None else [
            state_row(kind, prev, j) for j in range(len(index)) if int(index[j]) == n]
        out.append(REFS[kind](cell, x[n], kids))
    if is_lstm(kind):
        return torch.stack([h for h, _ in out]), torch.stack([c for _, c in out])
    return torch.stack(out)


def assert_close(got, want):
    for g, w in zip(parts(got), parts(want), strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


# -- one step, many predecessors ----------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", VARIANTS)
def test_one_step_matches_the_papers_equations(kind, bias):
    cell = make(kind, bias)
    x = torch.randn(5, I, dtype=D64)
    prev = random_state(kind, 5)
    assert_close(cell(x, prev), reference(kind, cell, x, prev, torch.arange(5), 5))
    assert_close(cell(x), reference(kind, cell, x, None, None, 5))  # zero state


@pytest.mark.parametrize("kind", VARIANTS)
def test_many_predecessors_match_a_per_node_loop(kind):
    cell = make(kind)
    # row 0: three predecessors, row 1: none, row 2: one, row 3: two
    index = torch.tensor([0, 2, 0, 3, 0, 3])
    x = torch.randn(4, I, dtype=D64)
    prev = random_state(kind, len(index))
    assert_close(cell(x, prev, index=index, size=4), reference(kind, cell, x, prev, index, 4))


@pytest.mark.parametrize("kind", VARIANTS)
def test_no_input_rows_take_the_input_bias(kind):
    cell = make(kind)
    prev = random_state(kind, 3)
    zeros = torch.zeros(2, I, dtype=D64)  # W x = 0: only the biases remain
    index = torch.tensor([0, 1, 1])
    assert_close(cell(None, prev, index=index, size=2), cell(zeros, prev, index=index, size=2))


@pytest.mark.parametrize("kind", VARIANTS)
def test_gradcheck_with_and_without_index(kind):
    cell = make(kind)
    x = torch.randn(3, I, dtype=D64, requires_grad=True)
    prev = random_state(kind, 4, requires_grad=True)
    index = torch.tensor([0, 0, 2, 0])
    params = list(cell.parameters())

    def with_index(x, *rest):
        state = tuple(rest[:2]) if is_lstm(kind) else rest[0]
        return tuple(parts(cell(x, state, index=index, size=3)))

    def one_each(x, *rest):
        state = tuple(t[:3] for t in rest[:2]) if is_lstm(kind) else rest[0][:3]
        return tuple(parts(cell(x, state)))

    for fn in (with_index, one_each):
        assert torch.autograd.gradcheck(fn, (x, *parts(prev)))
    # and the cell's own parameters (the peephole weights included)
    assert torch.autograd.gradcheck(
        lambda *ps: tuple(parts(torch.func.functional_call(
            cell, dict(zip([n for n, _ in cell.named_parameters()], ps, strict=True)),
            (x.detach(), tuple(t.detach() for t in parts(prev)) if is_lstm(kind)
             else prev.detach()), {"index": index, "size": 3}))),
        tuple(p.detach().requires_grad_() for p in params))


def test_peephole_with_zero_peepholes_is_torch_lstm_cell():
    torch.manual_seed(0)
    ref = nn.LSTMCell(I, H, dtype=D64)
    cell = sr.PeepholeLSTMCell(I, H, dtype=D64)
    assert set(cell.state_dict()) == set(ref.state_dict()) | {"weight_peephole"}
    cell.load_state_dict(ref.state_dict(), strict=False)
    with torch.no_grad():
        cell.weight_peephole.zero_()
    x, h, c = (torch.randn(5, n, dtype=D64) for n in (I, H, H))
    assert_close(cell(x, (h, c)), ref(x, (h, c)))


def test_shapes_and_initialisation_range():
    for kind, chunks in (("peephole", 4), ("cifg", 3), ("mgu", 2)):
        cell = CLASSES[kind](I, 16)
        assert cell.weight_ih.shape == (chunks * 16, I)
        assert cell.weight_hh.shape == (chunks * 16, 16)
        assert all(p.abs().max() <= 0.25 for p in cell.parameters())  # U(-1/sqrt(H), 1/sqrt(H))
    assert sr.PeepholeLSTMCell(I, 16).weight_peephole.shape == (3, 16)
    assert sr.CIFGLSTMCell(I, 16, bias=False).bias_hh is None


# -- sequences --------------------------------------------------------------------------------
def run_reference(kind, cells, xs, lengths):
    """A stacked network step by step, each sequence on its own (no padding involved)."""
    outs = []
    for b, length in enumerate(lengths):
        seq = xs[:length, b]
        for cell in cells:
            state, rows = None, []
            for x in seq:
                preds = [] if state is None else [state]
                state = REFS[kind](cell, x, preds)
                rows.append(state[0] if is_lstm(kind) else state)
            seq = torch.stack(rows)
        outs.append(seq)
    return outs


def sequence_model(kind, layers):
    if kind == "peephole":  # a subclass of LSTMCell: the drop-in takes it as its cell
        return LSTM(I, H, num_layers=layers, cell=sr.PeepholeLSTMCell, dtype=D64)
    return Recurrent(CLASSES[kind], I, H, num_layers=layers, dtype=D64)


def layer_cells(kind, model):
    """The cells of a sequence model with the weights they run with, as plain cells."""
    cells = []
    for layer in range(model.num_layers):
        cell = CLASSES[kind](I if layer == 0 else H, H, dtype=D64)
        state = {k: v for k, v in model.cells[f"l{layer}"].state_dict().items()}
        if kind == "peephole":  # the stock weights live on the LSTM under torch's names
            state |= {n: getattr(model, f"{n}_l{layer}") for n in
                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        cell.load_state_dict(state)
        cells.append(cell)
    return cells


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("kind", VARIANTS)
def test_sequence_runs_the_cell_step_by_step(kind, packed):
    torch.manual_seed(1)
    model = sequence_model(kind, layers=2)
    lengths = [4, 2, 3]
    xs = torch.randn(4, 3, I, dtype=D64)
    if packed:
        out, _ = pad_packed_sequence(model(pack_padded_sequence(xs, torch.tensor(lengths),
                                                                enforce_sorted=False))[0])
    else:
        lengths = [4, 4, 4]
        out = model(xs)[0]
    want = run_reference(kind, layer_cells(kind, model), xs, lengths)
    for b, w in enumerate(want):
        torch.testing.assert_close(out[: lengths[b], b], w, atol=1e-12, rtol=0)


def test_peephole_lstm_keeps_torch_state_dict_plus_its_peepholes():
    model = LSTM(I, H, num_layers=2, cell=sr.PeepholeLSTMCell)
    ref = nn.LSTM(I, H, num_layers=2)
    assert set(model.state_dict()) == set(ref.state_dict()) | {
        "cells.l0.weight_peephole", "cells.l1.weight_peephole"}
    assert not model.uses_fused_path


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_with_a_stock_cell_is_torch(kind):
    """Recurrent's own loop against torch.nn (copied weights), bidirectional and stacked."""
    torch_cls, cell = {"rnn": (nn.RNN, sr.RNNCell), "gru": (nn.GRU, sr.GRUCell),
                       "lstm": (nn.LSTM, sr.LSTMCell)}[kind]
    torch.manual_seed(0)
    ref = torch_cls(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=D64)
    ours = Recurrent(cell, I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=D64)
    ours.load_state_dict({f"cells.{k.split('_', 2)[-1]}.{k.rsplit('_l', 1)[0]}": v
                          for k, v in ref.state_dict().items()})
    x = torch.randn(3, 5, I, dtype=D64)
    packed = pack_padded_sequence(x, torch.tensor([5, 2, 4]), batch_first=True,
                                  enforce_sorted=False)
    for inp in (x, packed):
        got, want = ours(inp), ref(inp)
        for g, w in zip(got, want, strict=True):
            g, w = (t.data if hasattr(t, "batch_sizes") else t for t in (g, w))
            for a, b in zip(parts(g), parts(w), strict=True):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_recurrent_errors():
    with pytest.raises(ValueError, match="subclass of RNNCellBase"):
        Recurrent(nn.LSTMCell, I, H)
    with pytest.raises(ValueError, match="feedback=True"):
        Recurrent(sr.MGUCell, I, H, num_layers=2, feedback=True, bidirectional=True)
    with pytest.raises(ValueError, match="hx"):
        Recurrent(sr.CIFGLSTMCell, I, H)(torch.randn(4, 2, I), torch.zeros(1, 2, H))


# -- trees: Child-Sum over children -----------------------------------------------------------
def tree_reference(kind, cell, x, edge_index):
    """Node by node, children first (a recursion: the reference only)."""
    children = {n: [] for n in range(x.size(0))}
    for child, parent in edge_index.t().tolist():
        children[parent].append(child)
    memo = {}

    def state(n):
        if n not in memo:
            memo[n] = REFS[kind](cell, x[n], [state(k) for k in children[n]])
        return memo[n]

    return [state(n) for n in range(x.size(0))]


@pytest.mark.parametrize("kind", VARIANTS)
def test_tree_bottom_up_matches_recursion(kind):
    cell = make(kind)
    # two trees: 0 <- (1, 2, 3), 2 <- (4, 5); and 6 <- 7 <- 8 (a chain)
    edge_index = torch.tensor([[1, 2, 3, 4, 5, 7, 8], [0, 0, 0, 2, 2, 6, 7]])
    x = torch.randn(9, I, dtype=D64)
    got = parts(run_up(cell, x, edge_index, return_state=True))
    want = tree_reference(kind, cell, x, edge_index)
    for n, w in enumerate(want):
        for g, ww in zip([t[n] for t in got], parts(w), strict=True):
            torch.testing.assert_close(g, ww, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", VARIANTS)
def test_a_chain_tree_is_the_sequence(kind):
    """Leaf = first step: the chain's root state equals the sequence's last state."""
    torch.manual_seed(2)
    model = sequence_model(kind, layers=1)
    cell = layer_cells(kind, model)[0]
    xs = torch.randn(6, 1, I, dtype=D64)
    seq_last = parts(model(xs)[1])[0][0, 0]
    # node k holds step 5 - k: node 0 (the root) is the last step, node 5 the first
    edge_index = torch.tensor([[k + 1 for k in range(5)], list(range(5))])
    root = run_up(cell, xs[:, 0].flip(0), edge_index)[0]
    torch.testing.assert_close(root, seq_last, atol=1e-12, rtol=0)


# -- graphs: the cell as a GraphNetwork node update -------------------------------------------
@pytest.mark.parametrize("kind", VARIANTS)
def test_graph_node_update_is_the_cell_on_aggregated_messages(kind):
    torch.manual_seed(4)
    cell = make(kind, input_size=5)
    edge_model = nn.Linear(2 + 2 * H, 5, dtype=D64)
    gn = sr.GraphNetwork(edge_model=edge_model, node_model=cell)
    x = random_state(kind, 4)
    h = parts(x)[0]
    edge_index = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 0, 0, 1]])
    edge_attr = torch.randn(5, 2, dtype=D64)
    new_x, new_e, _ = gn(x, edge_index, edge_attr)
    messages = edge_model(torch.cat([edge_attr, h[edge_index[0]], h[edge_index[1]]], 1))
    inbox = torch.zeros(4, 5, dtype=D64).index_add_(0, edge_index[1], messages)
    torch.testing.assert_close(new_e, messages)
    assert_close(new_x, reference(kind, cell, inbox, x, torch.arange(4), 4))


def test_recurrent_dropout_and_residual_with_a_variant_cell():
    torch.manual_seed(0)
    plain = Recurrent(sr.MGUCell, I, H, num_layers=2, dtype=D64)
    x = torch.randn(5, 3, I, dtype=D64)
    for mode, rate in (("variational", 0.5), ("zoneout", 0.0)):
        other = Recurrent(sr.MGUCell, I, H, num_layers=2, dtype=D64, recurrent_dropout=mode,
                          recurrent_dropout_rate=rate)
        other.load_state_dict(plain.state_dict())
        if rate:
            assert not torch.allclose(other(x)[0], plain(x)[0])  # masks act in training
        other.eval()  # no masks in evaluation; zoneout at rate 0 changes nothing
        torch.testing.assert_close(other(x)[0], plain(x)[0], atol=1e-12, rtol=0)
    residual = Recurrent(sr.MGUCell, I, H, num_layers=2, residual=True, dtype=D64)
    residual.load_state_dict(plain.state_dict())
    below = Recurrent(sr.MGUCell, I, H, dtype=D64)
    below.load_state_dict({k: v for k, v in plain.state_dict().items() if "l0" in k})
    torch.testing.assert_close(residual(x)[0] - plain(x)[0], torch.zeros(5, 3, H, dtype=D64)
                               + below(x)[0], atol=1e-12, rtol=0)

"""Cells are torch.nn cells: every call form torch.nn documents, against torch.nn's cells on
copied weights (or, for the variants torch lacks, against plain references written here),
torch's parameter names and state_dict, errors that name the argument, and the many-predecessor
call against a per-node loop."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import structrnn as sr
from structrnn import cells as cells_module
from structrnn.trees.models import RecursiveCell, RNTNCell

D64 = torch.float64
I, H, B = 3, 5, 4

# structrnn cell -> its torch.nn counterpart (same constructor arguments)
TORCH_PAIRS = {
    "rnn_tanh": (sr.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (sr.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    "gru": (sr.GRUCell, nn.GRUCell, {}),
    "lstm": (sr.LSTMCell, nn.LSTMCell, {}),
}


def torch_pair(kind: str, bias: bool = True):
    ours_cls, torch_cls, extra = TORCH_PAIRS[kind]
    ref = torch_cls(I, H, bias=bias, dtype=D64, **extra)
    ours = ours_cls(I, H, bias=bias, dtype=D64, **extra)
    ours.load_state_dict(ref.state_dict())  # strict: torch's names and shapes
    return ours, ref


def two_state(kind: str) -> bool:
    return kind in ("lstm", "nary1", "peephole", "cifg")


def states(kind: str, rows: int | None):
    shape = (H,) if rows is None else (rows, H)
    h = torch.randn(shape, dtype=D64)
    return (h, torch.randn(shape, dtype=D64)) if two_state(kind) else h


def call_forms(kind: str):
    """(label, args, kwargs) for every way torch.nn documents a cell call, batched and not."""
    x, x1 = torch.randn(B, I, dtype=D64), torch.randn(I, dtype=D64)
    hx, hx1 = states(kind, B), states(kind, None)
    forms = [
        ("cell(input)", (x,), {}),
        ("cell(input, hx)", (x, hx), {}),
        ("cell(input, None)", (x, None), {}),
        ("cell(input, hx=hx)", (x,), {"hx": hx}),
        ("cell(input=, hx=)", (), {"input": x, "hx": hx}),
        ("cell(input=)", (), {"input": x}),
        ("cell(input, hx=None)", (x,), {"hx": None}),
        ("unbatched cell(input)", (x1,), {}),
        ("unbatched cell(input, hx)", (x1, hx1), {}),
        ("unbatched cell(input=, hx=)", (), {"input": x1, "hx": hx1}),
    ]
    if two_state(kind):  # torch's LSTMCell also takes hx as a list [h, c]
        forms.append(("cell(input, [h, c])", (x, list(hx)), {}))
    return forms


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


# -- the cells torch.nn has ---------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(TORCH_PAIRS))
def test_every_call_form_matches_torch(kind, bias):
    ours, ref = torch_pair(kind, bias)
    for label, args, kwargs in call_forms(kind):
        got, want = as_list(ours(*args, **kwargs)), as_list(ref(*args, **kwargs))
        assert len(got) == len(want), label
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape, label
            assert_close(g, w, atol=1e-12, rtol=0, msg=label)


def test_nary_cell_of_arity_one_is_torch_lstm_cell_in_every_form():
    ref = nn.LSTMCell(I, H, dtype=D64)
    ours = sr.NaryLSTMCell(I, H, arity=1, dtype=D64)
    ours.load_state_dict(ref.state_dict())
    for label, args, kwargs in call_forms("nary1"):
        for g, w in zip(ours(*args, **kwargs), ref(*args, **kwargs), strict=True):
            assert_close(g, w, atol=1e-12, rtol=0, msg=label)


@pytest.mark.parametrize("kind", list(TORCH_PAIRS))
def test_state_dict_loads_both_ways_with_torchs_names(kind):
    ours_cls, torch_cls, extra = TORCH_PAIRS[kind]
    ours, ref = ours_cls(I, H, **extra), torch_cls(I, H, **extra)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh"]
    ref.load_state_dict(ours.state_dict())  # and torch reads ours
    x = torch.randn(B, I)
    for g, w in zip(as_list(ours(x)), as_list(ref(x)), strict=True):
        assert_close(g, w)


def test_the_forward_signature_is_torchs_plus_keyword_only_index_and_size():
    for cls in (sr.RNNCell, sr.GRUCell, sr.LSTMCell, sr.PeepholeLSTMCell, sr.CIFGLSTMCell,
                sr.MGUCell, sr.NaryLSTMCell, RecursiveCell, RNTNCell):
        params = inspect.signature(cls.forward).parameters
        names = list(params)
        assert names[:3] == ["self", "input", "hx"], cls
        assert params["hx"].default is None
        for name in ("index", "size"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (cls, name)
    child_index = inspect.signature(sr.NaryLSTMCell.forward).parameters["child_index"]
    assert child_index.kind is inspect.Parameter.KEYWORD_ONLY


# -- the variants torch lacks: plain references ---------------------------------------------------
def ref_peephole(cell, x, h, c):
    p_i, p_f, p_o = cell.weight_peephole
    gi, gf, gg, go = (F.linear(x, cell.weight_ih, cell.bias_ih)
                      + F.linear(h, cell.weight_hh, cell.bias_hh)).chunk(4, -1)
    c_new = torch.sigmoid(gf + p_f * c) * c + torch.sigmoid(gi + p_i * c) * torch.tanh(gg)
    return torch.sigmoid(go + p_o * c_new) * torch.tanh(c_new), c_new


def ref_cifg(cell, x, h, c):
    gf, gg, go = (F.linear(x, cell.weight_ih, cell.bias_ih)
                  + F.linear(h, cell.weight_hh, cell.bias_hh)).chunk(3, -1)
    f = torch.sigmoid(gf)
    c_new = f * c + (1 - f) * torch.tanh(gg)
    return torch.sigmoid(go) * torch.tanh(c_new), c_new


def ref_mgu(cell, x, h):
    wf, wn = cell.weight_ih.chunk(2, 0)
    uf, un = cell.weight_hh.chunk(2, 0)
    bf, bn = cell.bias_ih.chunk(2)
    cf, cn = cell.bias_hh.chunk(2)
    f = torch.sigmoid(x @ wf.T + bf + h @ uf.T + cf)
    n = torch.tanh(x @ wn.T + bn + (f * h) @ un.T + cn)
    return (1 - f) * h + f * n


def ref_sigmoid_rnn(cell, x, h):
    return torch.sigmoid(x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T
                         + cell.bias_hh)


VARIANTS = {
    "peephole": (lambda: sr.PeepholeLSTMCell(I, H, dtype=D64), ref_peephole),
    "cifg": (lambda: sr.CIFGLSTMCell(I, H, dtype=D64), ref_cifg),
    "mgu": (lambda: sr.MGUCell(I, H, dtype=D64), ref_mgu),
    "rnn_sigmoid": (lambda: sr.RNNCell(I, H, nonlinearity="sigmoid", dtype=D64),
                    ref_sigmoid_rnn),
}


def reference_call(kind, cell, reference, args, kwargs):
    """The reference for one call form: torch's rules (hx None -> zeros, 1-D -> one row)."""
    x = kwargs.get("input", args[0] if args else None)
    hx = kwargs.get("hx", args[1] if len(args) > 1 else None)
    if hx is None:
        zeros = torch.zeros(x.shape[:-1] + (H,), dtype=D64)
        hx = (zeros, zeros) if two_state(kind) else zeros
    return reference(cell, x, *hx) if two_state(kind) else reference(cell, x, hx)


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_variants_take_every_call_form(kind):
    make, reference = VARIANTS[kind]
    cell = make()
    for label, args, kwargs in call_forms(kind):
        got = as_list(cell(*args, **kwargs))
        want = as_list(reference_call(kind, cell, reference, args, kwargs))
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape, label
            assert_close(g, w, atol=1e-12, rtol=0, msg=label)


@pytest.mark.parametrize("cls", [RecursiveCell, RNTNCell])
def test_recursive_cells_take_torchs_call_forms(cls):
    cell = cls(H).double()
    x, x1 = torch.randn(B, H, dtype=D64), torch.randn(H, dtype=D64)
    for got, want in ((cell(x), x), (cell(input=x), x), (cell(x1), x1), (cell(x, None), x)):
        assert torch.equal(got, want)  # a leaf is its input vector
    h = torch.randn(B, H, dtype=D64)
    children = torch.cat([h, torch.zeros_like(h)], 1)  # the one child sits in slot 0
    for got in (cell(x, h), cell(x, hx=h), cell(input=x, hx=h)):
        assert_close(got, cell.compose(children), atol=1e-12, rtol=0)
    assert_close(cell(x1, h[0]), cell.compose(children[:1])[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", [RecursiveCell, RNTNCell])
def test_recursive_cells_take_child_index_like_the_nary_cell(cls, fresh_warnings):
    """The many-children call names each child's slot ``child_index=``, as NaryLSTMCell's; the
    reference is Socher et al.'s composition written per parent here."""
    torch.manual_seed(0)
    cell = cls(H).double()
    x, h = torch.randn(3, H, dtype=D64), torch.randn(4, H, dtype=D64)
    index, slot = torch.tensor([0, 0, 2, 1]), torch.tensor([1, 0, 1, 0])
    got = cell(x, h, index=index, size=3, child_index=slot)
    for parent in range(3):
        kids = [torch.zeros(H, dtype=D64), torch.zeros(H, dtype=D64)]  # a missing slot: zero
        for j in (index == parent).nonzero().flatten().tolist():
            kids[int(slot[j])] = h[j]
        c = torch.cat(kids)
        pre = cell.weight_hh @ c + cell.bias_hh
        if cls is RNTNCell:
            pre = pre + torch.stack([c @ v @ c for v in cell.tensor])
        assert_close(got[parent], torch.tanh(pre), atol=1e-12, rtol=0)
    # one child per row, in the slot child_index names
    one = cell(x, h[:3], child_index=torch.tensor([1, 0, 1]))
    assert_close(one, cell(x, h[:3], index=torch.arange(3), size=3,
                           child_index=torch.tensor([1, 0, 1])), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="pass child_index"):
        cell(x, h, index=index, size=3)
    with pytest.warns(FutureWarning, match="'pos' is deprecated, use 'child_index'"):
        old = cell(x, h, index=index, size=3, pos=slot)
    assert torch.equal(old, got)  # the same call under its old keyword: identical math


# -- keywords -----------------------------------------------------------------------------------
ALL_CELLS = [lambda: sr.RNNCell(I, H), lambda: sr.GRUCell(I, H), lambda: sr.LSTMCell(I, H),
             lambda: sr.NaryLSTMCell(I, H), lambda: sr.PeepholeLSTMCell(I, H),
             lambda: sr.CIFGLSTMCell(I, H), lambda: sr.MGUCell(I, H),
             lambda: RecursiveCell(I), lambda: RNTNCell(I)]


@pytest.mark.parametrize("make", ALL_CELLS)
def test_an_unknown_keyword_is_a_type_error_naming_it_at_the_call(make, monkeypatch):
    cell = make()

    def never(*args, **kwargs):  # the check comes before any work
        raise AssertionError("combine ran")

    monkeypatch.setattr(cell, "combine", never)
    with pytest.raises(TypeError, match=r"forward\(\) got an unexpected keyword argument "
                                        r"'hidden'"):
        cell(torch.randn(2, I), hidden=None)
    with pytest.raises(TypeError, match="'bogus'"):
        cell(torch.randn(2, I), bogus=1, size=2)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Every deprecated spelling warns once per process: start from none warned."""
    monkeypatch.setattr(cells_module, "_WARNED", set())


def test_old_keywords_warn_once_and_mean_the_new_ones(fresh_warnings):
    cell = sr.LSTMCell(I, H)
    x, hx = torch.randn(B, I), (torch.randn(B, H), torch.randn(B, H))
    want = cell(x, hx)
    with pytest.warns(FutureWarning) as record:
        got = cell(x=x, prev=hx)
    assert sorted(str(r.message) for r in record) == [
        "LSTMCell.forward: the keyword 'prev' is deprecated, use 'hx'",
        "LSTMCell.forward: the keyword 'x' is deprecated, use 'input'"]
    assert {r.filename for r in record} == {__file__}  # they point at the user's line
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)  # the same call under the old keywords: identical math
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second use is silent
        cell(x=x, prev=hx)
    with pytest.raises(TypeError, match="'x' and 'input'"):
        cell(x, x=x)


def test_nary_pos_is_the_deprecated_child_index(fresh_warnings):
    cell = sr.NaryLSTMCell(I, H, arity=2)
    x, hx = torch.randn(2, I), (torch.randn(3, H), torch.randn(3, H))
    index, slots = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    want = cell(x, hx, index=index, size=2, child_index=slots)
    with pytest.warns(FutureWarning, match="'pos' is deprecated, use 'child_index'"):
        got = cell(x, hx, index=index, size=2, pos=slots)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)  # the same call under the old keyword: identical math
    # one child per row, in the slot child_index says (slot 1 reads the slot-1 matrices)
    h1, c1 = cell(x, (hx[0][:2], hx[1][:2]), child_index=torch.tensor([1, 1]))
    ref = cell(x, (hx[0][:2], hx[1][:2]), index=torch.arange(2), size=2,
               child_index=torch.tensor([1, 1]))
    assert_close(h1, ref[0])
    assert not torch.allclose(h1, cell(x, (hx[0][:2], hx[1][:2]))[0])


def test_no_input_with_size_stays_allowed():
    cell = sr.GRUCell(I, H, dtype=D64)
    hx = torch.randn(3, H, dtype=D64)
    index = torch.tensor([0, 0, 1])
    got = cell(None, hx, index=index, size=2)
    assert_close(got, cell(torch.zeros(2, I, dtype=D64), hx, index=index, size=2))
    assert_close(cell(input=None, size=2), cell(torch.zeros(2, I, dtype=D64)))


# -- errors: torch raises, and ours names the argument ------------------------------------------
WRONG = {
    "3-D input": (lambda: (torch.randn(2, 2, I),),
                  r"input must be 1-D .* or 2-D .*got \(2, 2, 3\)"),
    "input features": (lambda: (torch.randn(B, I + 1),), r"input must have shape \(\*, 3\)"),
    "hx rows": (lambda: (torch.randn(B, I), (torch.zeros(B + 1, H),) * 2),
                r"hx\[0\] must have shape \(4, 5\), got \(5, 5\)"),
    "hx width": (lambda: (torch.randn(B, I), (torch.zeros(B, H), torch.zeros(B, H + 1))),
                 r"hx\[1\] must have shape \(4, 5\), got \(4, 6\)"),
    "3-D hx": (lambda: (torch.randn(B, I), (torch.zeros(1, B, H),) * 2),
               r"hx\[0\] must have shape \(4, 5\), got \(1, 4, 5\)"),
    "unbatched input, batched hx": (lambda: (torch.randn(I), (torch.zeros(1, H),) * 2),
                                    r"hx\[0\] must be 1-D \(hidden_size,\)"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_shapes_fail_as_in_torch_and_name_the_argument(case):
    ours, ref = torch_pair("lstm")
    make_args, message = WRONG[case]
    args = tuple(a.double() if isinstance(a, torch.Tensor) else tuple(t.double() for t in a)
                 for a in make_args())
    with pytest.raises((RuntimeError, ValueError)):
        ref(*args)
    with pytest.raises(ValueError, match=message):
        ours(*args)


def test_a_state_of_the_wrong_form_is_named():
    with pytest.raises(ValueError, match=r"hx must be a tuple of 2 Tensors \(h, c\)"):
        sr.LSTMCell(I, H)(torch.randn(B, I), torch.zeros(B, H))
    with pytest.raises(ValueError, match=r"hx must be a Tensor"):
        sr.GRUCell(I, H)(torch.randn(B, I), (torch.zeros(B, H), torch.zeros(B, H)))
    with pytest.raises(TypeError, match="input must be a Tensor"):
        sr.GRUCell(I, H)([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="index needs batched input"):
        sr.GRUCell(I, H)(torch.randn(I), torch.zeros(2, H), index=torch.tensor([0, 0]))


# -- the many-predecessor call: Child-Sum against a per-node loop ---------------------------------
def child_sum_per_node(cell, x, h, c, index, size):
    """Tai et al. (2015), eq. 2-8, one node at a time."""
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh
    Wi, Wf, Wg, Wo = W.chunk(4, 0)
    Ui, Uf, Ug, Uo = U.chunk(4, 0)
    bi, bf, bg, bo = b.chunk(4)
    hs, cs = [], []
    for node in range(size):
        kids = (index == node).nonzero().flatten().tolist()
        h_sum = sum((h[k] for k in kids), torch.zeros(H, dtype=x.dtype))
        i = torch.sigmoid(Wi @ x[node] + Ui @ h_sum + bi)
        o = torch.sigmoid(Wo @ x[node] + Uo @ h_sum + bo)
        g = torch.tanh(Wg @ x[node] + Ug @ h_sum + bg)
        c_node = i * g
        for k in kids:
            c_node = c_node + torch.sigmoid(Wf @ x[node] + Uf @ h[k] + bf) * c[k]
        hs.append(o * torch.tanh(c_node))
        cs.append(c_node)
    return torch.stack(hs), torch.stack(cs)


def test_child_sum_call_matches_a_per_node_reference():
    torch.manual_seed(0)
    cell = sr.LSTMCell(I, H, dtype=D64)
    size = 5
    index = torch.tensor([0, 0, 2, 2, 2, 4])  # rows 1 and 3 have no children
    x = torch.randn(size, I, dtype=D64)
    h, c = torch.randn(6, H, dtype=D64), torch.randn(6, H, dtype=D64)
    want = child_sum_per_node(cell, x, h, c, index, size)
    for got in (cell(x, (h, c), index=index, size=size), cell(x, [h, c], index=index),
                cell(input=x, hx=(h, c), index=index, size=size)):
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, atol=1e-12, rtol=0)

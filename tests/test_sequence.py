"""sr.RNN / GRU / LSTM against torch.nn with copied weights, on the fused and the generic path."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import structrnn as sr
from structrnn.sequence import GRU, LSTM, RNN

D64 = torch.float64
KINDS = {
    "rnn_tanh": (nn.RNN, RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, RNN, {"nonlinearity": "relu"}),
    "gru": (nn.GRU, GRU, {}),
    "lstm": (nn.LSTM, LSTM, {}),
}
I, H, T, B = 3, 4, 4, 3
LENGTHS = torch.tensor([2, 4, 3])  # uneven and unsorted: exercises the permutations


def make_pair(kind: str, generic: bool, **kw):
    torch_cls, sr_cls, extra = KINDS[kind]
    ref = torch_cls(I, H, dtype=D64, **extra, **kw)
    ours = sr_cls(I, H, dtype=D64, force_generic=generic, **extra, **kw)
    ours.load_state_dict(ref.state_dict())  # copied weights, not merely the same seed
    assert ours.uses_fused_path is not generic
    return ref, ours


def flat(result) -> list[torch.Tensor]:
    out, hidden = result
    out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    return [out] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def outputs_and_grads(model, x, packed, batch_first, hx=None):
    inp = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False) \
        if packed else x
    tensors = flat(model(inp, hx))
    g = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=D64)).sum() for t in tensors)
    wrt = [x] + list(model.parameters())
    if hx is not None:
        wrt += list(hx) if isinstance(hx, tuple) else [hx]
    return tensors, torch.autograd.grad(loss, wrt)


def assert_all_close(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=0)


@pytest.mark.parametrize("generic", [False, True], ids=["fused", "generic"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch(kind, num_layers, bidirectional, batch_first, packed, generic):
    torch.manual_seed(1)
    ref, ours = make_pair(kind, generic, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=D64, requires_grad=True)
    out_ref, grad_ref = outputs_and_grads(ref, x, packed, batch_first)
    out_ours, grad_ours = outputs_and_grads(ours, x, packed, batch_first)
    assert_all_close(out_ours, out_ref)
    assert_all_close(grad_ours, grad_ref)


@pytest.mark.parametrize("generic", [False, True], ids=["fused", "generic"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_initial_state_given(kind, packed, generic):
    ref, ours = make_pair(kind, generic, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=D64, requires_grad=True)
    h0 = torch.randn(4, B, H, dtype=D64, requires_grad=True)
    hx = (h0, torch.randn(4, B, H, dtype=D64, requires_grad=True)) if kind == "lstm" else h0
    out_ref, grad_ref = outputs_and_grads(ref, x, packed, False, hx)
    out_ours, grad_ours = outputs_and_grads(ours, x, packed, False, hx)
    assert_all_close(out_ours, out_ref)
    assert_all_close(grad_ours, grad_ref)


@pytest.mark.parametrize("generic", [False, True], ids=["fused", "generic"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input(kind, batch_first, generic):
    ref, ours = make_pair(kind, generic, num_layers=2, bidirectional=True,
                          batch_first=batch_first)
    x = torch.randn(T, I, dtype=D64)
    h0 = torch.randn(4, H, dtype=D64)
    hx = (h0, torch.randn(4, H, dtype=D64)) if kind == "lstm" else h0
    for state in (None, hx):
        got, want = flat(ours(x, state)), flat(ref(x, state))
        assert got[0].shape == (T, 2 * H) and got[1].shape == (4, H)
        assert_all_close(got, want)


def test_padded_output_of_packed_input_matches_torch():
    ref, ours = make_pair("lstm", True, batch_first=True)
    x = torch.randn(B, T, I, dtype=D64)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    got, got_len = pad_packed_sequence(ours(packed)[0], batch_first=True)
    want, want_len = pad_packed_sequence(ref(packed)[0], batch_first=True)
    assert torch.equal(got_len, want_len)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    assert (got[0, 2:] == 0).all()  # past the first sequence's length: padding


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trip(kind):
    torch_cls, sr_cls, extra = KINDS[kind]
    ref = torch_cls(I, H, num_layers=2, bidirectional=True, **extra)
    ours = sr_cls(I, H, num_layers=2, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert "weight_hh_l1_reverse" in ours.state_dict()
    ours.load_state_dict(ref.state_dict())  # strict
    back = torch_cls(I, H, num_layers=2, bidirectional=True, **extra)
    back.load_state_dict(ours.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_initialisation_draws(kind):
    torch_cls, sr_cls, extra = KINDS[kind]
    torch.manual_seed(3)
    ref = torch_cls(I, H, num_layers=3, bidirectional=True, bias=False, **extra)
    after_ref = torch.rand(3)
    torch.manual_seed(3)
    ours = sr_cls(I, H, num_layers=3, bidirectional=True, bias=False, **extra)
    after_ours = torch.rand(3)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(after_ref, after_ours)  # the random stream is left where torch leaves it


def test_is_a_torch_module_and_converts():
    m = LSTM(I, H, force_generic=True).double()
    assert isinstance(m, nn.LSTM)
    out, (h, c) = m(torch.randn(T, B, I, dtype=D64))
    assert out.dtype == D64 and h.shape == (1, B, H)


def test_inter_layer_dropout_draws_as_torch():
    torch.manual_seed(0)
    ref = nn.GRU(I, H, num_layers=3, dropout=0.5, bidirectional=True)
    ours = GRU(I, H, num_layers=3, dropout=0.5, bidirectional=True, force_generic=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    torch.manual_seed(5)
    want = ref(x)[0]
    torch.manual_seed(5)
    got = ours(x)[0]
    torch.testing.assert_close(got, want)
    ref.eval()
    assert not torch.allclose(ref(x)[0], want)  # dropout really acted in training mode


# -- errors -----------------------------------------------------------------------------------
def test_wrong_input_size_names_argument_and_shapes():
    m = LSTM(I, H)
    with pytest.raises(ValueError, match=r"input must have shape .*\(\*, \*, 3\).*got \(4, 3, 5\)"):
        m(torch.randn(T, B, 5))
    with pytest.raises(ValueError, match=r"input.*got \(2, 4, 3, 3\)"):
        m(torch.randn(2, T, B, I))
    packed = pack_padded_sequence(torch.randn(T, B, 5), LENGTHS, enforce_sorted=False)
    with pytest.raises(ValueError, match=r"PackedSequence's data must have shape \(\*, 3\)"):
        m(packed)


def test_wrong_state_shape_names_argument_and_shapes():
    m = LSTM(I, H, num_layers=2)
    x = torch.randn(T, B, I)
    good = torch.zeros(2, B, H)
    msg = r"hx\[1\] \(c0\) must have shape \(2, 3, 4\).*got \(1, 3, 4\)"
    with pytest.raises(ValueError, match=msg):
        m(x, (good, torch.zeros(1, B, H)))
    with pytest.raises(ValueError, match="hx must be a tuple"):
        m(x, good)
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 3, 4\).*got \(1, 2, 4\)"):
        GRU(I, H)(x, torch.zeros(1, 2, H))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 4\)"):
        GRU(I, H)(torch.randn(T, I), torch.zeros(1, 1, H))
    with pytest.raises(ValueError, match="dtype"):
        GRU(I, H)(x.double())


def test_constructor_errors():
    with pytest.raises(NotImplementedError, match="proj_size=2"):
        LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="recurrent_dropout must be"):
        LSTM(I, H, recurrent_dropout="gaussian")
    with pytest.raises(ValueError, match="recurrent_dropout_rate"):
        LSTM(I, H, recurrent_dropout="zoneout", recurrent_dropout_rate=1.0)
    with pytest.raises(ValueError, match="cell must be LSTMCell or a subclass"):
        LSTM(I, H, cell=sr.GRUCell)

    class FiveGates(sr.LSTMCell):
        num_chunks = 5

    with pytest.raises(ValueError, match=r"weight_ih of shape \(20, 3\).*needs \(16, 3\)"):
        LSTM(I, H, cell=FiveGates)


# -- a user's own cell ------------------------------------------------------------------------
class ForgetBiasLSTMCell(sr.LSTMCell):
    """A learnable offset on the forget gate: equal to torch's LSTM with that offset in b_ih."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.forget_bias = nn.Parameter(torch.full((self.hidden_size,), 0.5, dtype=D64))

    def project_input(self, x):
        H = self.hidden_size
        offset = torch.cat([torch.zeros(H, dtype=x.dtype), self.forget_bias,
                            torch.zeros(2 * H, dtype=x.dtype)])
        return super().project_input(x) + offset


def test_user_cell_runs_the_generic_path_with_its_own_parameters():
    torch.manual_seed(0)
    ref = nn.LSTM(I, H, num_layers=2, dtype=D64)
    ours = LSTM(I, H, num_layers=2, dtype=D64, cell=ForgetBiasLSTMCell)
    assert not ours.uses_fused_path
    assert "cells.l1.forget_bias" in ours.state_dict()
    ours.load_state_dict(ref.state_dict(), strict=False)
    with torch.no_grad():
        ours.cells["l1"].forget_bias.fill_(0.25)
        for layer, off in ((0, 0.5), (1, 0.25)):
            getattr(ref, f"bias_ih_l{layer}")[H:2 * H] += off
    x = torch.randn(T, B, I, dtype=D64)
    got, want = ours(x), ref(x)
    assert_all_close(flat(got), flat(want))
    got[0].sum().backward()
    assert ours.cells["l1"].forget_bias.grad.abs().sum() > 0
    assert ours.weight_hh_l1.grad.abs().sum() > 0


# -- recurrent dropout ------------------------------------------------------------------------
class RecordingCell(sr.LSTMCell):
    """Records what the generic loop feeds the cell: projected inputs and predecessor states."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inputs, self.prevs, self.news = [], [], []

    def project_input(self, x):
        self.inputs.append(x.detach())
        return super().project_input(x)

    def combine(self, x_proj, prev, index, size):
        new = super().combine(x_proj, prev, index, size)
        self.prevs.append(prev[0].detach())
        self.news.append(new[0].detach())
        return new


def recording_lstm(**kw) -> LSTM:
    return LSTM(I, H, dtype=D64, cell=RecordingCell, **kw)


def test_variational_dropout_reuses_one_mask_per_sequence():
    torch.manual_seed(0)
    p = 0.5
    m = recording_lstm(recurrent_dropout="variational", recurrent_dropout_rate=p)
    steps, batch = 6, 5
    x = torch.randn(steps, batch, I, dtype=D64)
    h0 = torch.randn(1, batch, H, dtype=D64)
    out, _ = m(x, (h0, torch.zeros_like(h0)))
    cell = m.cells["l0"]
    in_mask = (cell.inputs[0].view(steps, batch, I) / x)
    assert torch.allclose(in_mask, in_mask[:1].expand_as(in_mask))  # same at every step
    true_prev = [h0[0]] + [out[t].detach() for t in range(steps - 1)]
    h_masks = torch.stack([fed / prev for fed, prev in zip(cell.prevs, true_prev)])
    assert torch.allclose(h_masks, h_masks[:1].expand_as(h_masks))  # same at every step
    for mask in (in_mask[0], h_masks[0]):
        values = set(mask.round(decimals=6).flatten().tolist())
        assert values == {0.0, 1 / (1 - p)}  # inverted dropout, both values present
    assert len({tuple(row.tolist()) for row in h_masks[0]}) > 1  # one mask per sequence


def test_variational_dropout_is_off_in_eval_and_matches_torch():
    torch.manual_seed(0)
    ref = nn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=D64)
    ours = LSTM(I, H, num_layers=2, bidirectional=True, dtype=D64,
                recurrent_dropout="variational", recurrent_dropout_rate=0.4)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=D64)
    assert not torch.allclose(ours(x)[0], ref(x)[0])  # training: masks act
    ours.eval()
    assert_all_close(flat(ours(x)), flat(ref(x)))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_zoneout_keeps_previous_units_at_the_rate(kind):
    torch.manual_seed(0)
    rate = 0.3

    class RecordingGRU(sr.GRUCell):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.prevs, self.news = [], []

        def combine(self, x_proj, prev, index, size):
            new = super().combine(x_proj, prev, index, size)
            self.prevs.append(prev.detach())
            self.news.append(new.detach())
            return new

    cls, cell = (GRU, RecordingGRU) if kind == "gru" else (LSTM, RecordingCell)
    m = cls(I, H, dtype=D64, cell=cell, recurrent_dropout="zoneout", recurrent_dropout_rate=rate)
    x = torch.randn(20, 16, I, dtype=D64)
    out = m(x)[0].detach()
    rec = m.cells["l0"]
    prev, new = torch.stack(rec.prevs), torch.stack(rec.news)
    kept = out == prev
    assert ((out == prev) | (out == new)).all()  # each unit: previous value or the update
    assert abs(kept.double().mean().item() - rate) < 0.05

    m.eval()
    rec.prevs.clear()
    rec.news.clear()
    out = m(x)[0].detach()
    prev, new = torch.stack(rec.prevs), torch.stack(rec.news)
    torch.testing.assert_close(out, rate * prev + (1 - rate) * new)  # expectation at test time


def test_zoneout_rate_zero_equals_torch():
    torch.manual_seed(0)
    ref = nn.GRU(I, H, num_layers=2, dtype=D64)
    ours = GRU(I, H, num_layers=2, dtype=D64, recurrent_dropout="zoneout",
               recurrent_dropout_rate=0.0)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=D64)
    assert_all_close(flat(ours(x)), flat(ref(x)))



# -- a sigmoid Elman network: the generic path by itself ------------------------------------
def test_sigmoid_rnn_with_default_arguments_is_a_hand_written_loop():
    torch.manual_seed(0)
    default = RNN(I, H, nonlinearity="sigmoid")
    assert not default.uses_fused_path and "nonlinearity='sigmoid'" in repr(default)
    out, h_n = default(torch.randn(T, B, I))
    assert out.shape == (T, B, H) and (out > 0).all() and (out < 1).all()

    m = RNN(I, H, num_layers=2, nonlinearity="sigmoid", dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    out, h_n = m(x)
    layer_in, finals = x, []
    for layer in range(2):
        W, U, b, c = (getattr(m, f"{n}_l{layer}") for n in
                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        h, rows = torch.zeros(B, H, dtype=D64), []
        for t in range(T):
            h = 1 / (1 + torch.exp(-(layer_in[t] @ W.T + b + h @ U.T + c)))
            rows.append(h)
        layer_in = torch.stack(rows)
        finals.append(h)
    torch.testing.assert_close(out, layer_in, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n, torch.stack(finals), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="'tanh', 'relu' or 'sigmoid'"):
        RNN(I, H, nonlinearity="softsign")


# -- deep networks: residual stacks and feedback from every layer --------------------------
def single_layers(kind: str, model, layers: int, bidirectional: bool):
    """torch.nn one-layer networks holding each layer's weights of ``model``."""
    torch_cls, _, extra = KINDS[kind]
    D = 1 + bidirectional
    nets = []
    for layer in range(layers):
        net = torch_cls(I if layer == 0 else D * H, H, bidirectional=bidirectional, dtype=D64,
                        **extra)
        net.load_state_dict({k: getattr(model, k.replace("_l0", f"_l{layer}"))
                             for k in net.state_dict()})
        nets.append(net)
    return nets


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_residual_stack_adds_each_upper_layers_input(kind, bidirectional):
    torch.manual_seed(0)
    _, sr_cls, extra = KINDS[kind]
    m = sr_cls(I, H, num_layers=3, bidirectional=bidirectional, residual=True, dtype=D64,
               **extra)
    assert not m.uses_fused_path and "residual=True" in repr(m)
    x = torch.randn(T, B, I, dtype=D64)
    out, hidden = m(x)
    layer_in, finals = x, []
    for layer, net in enumerate(single_layers(kind, m, 3, bidirectional)):
        y, h = net(layer_in)
        layer_in = y if layer == 0 else y + layer_in
        finals.append(h)
    torch.testing.assert_close(out, layer_in, atol=1e-12, rtol=0)
    for i, got in enumerate(flat((out, hidden))[1:]):
        want = torch.cat([f[i] if isinstance(f, tuple) else f for f in finals])
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    one_layer = sr_cls(I, H, residual=True, **extra)
    assert one_layer.uses_fused_path  # nothing to add around a single layer


def feedback_reference(cells, xs, lengths, lstm: bool):
    """Every sequence on its own, step by step: layer l reads [layer l-1 now, other layers at
    the previous step] and keeps its own state."""
    outs, L = [], len(cells)
    for b, n in enumerate(lengths):
        h = [torch.zeros(H, dtype=D64) for _ in range(L)]
        c = [torch.zeros(H, dtype=D64) for _ in range(L)]
        rows = []
        for t in range(n):
            below, new_h, new_c = xs[t, b], [], []
            for layer, cell in enumerate(cells):
                others = [h[k] for k in range(L) if k != layer]
                inp = torch.cat([below] + others).unsqueeze(0)
                if lstm:
                    hh, cc = cell(inp, (h[layer].unsqueeze(0), c[layer].unsqueeze(0)))
                    new_c.append(cc[0])
                else:
                    hh = cell(inp, h[layer].unsqueeze(0))
                new_h.append(hh[0])
                below = hh[0]
            h, c = new_h, new_c or c
            rows.append(below)
        outs.append((torch.stack(rows), h))
    return outs


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_feedback_layers_read_every_layer_of_the_previous_step(kind):
    torch.manual_seed(0)
    cell_cls, torch_cell = {"gru": (sr.GRUCell, nn.GRUCell),
                            "lstm": (sr.LSTMCell, nn.LSTMCell)}[kind]
    L = 3
    m = sr.sequence.Recurrent(cell_cls, I, H, num_layers=L, feedback=True, dtype=D64)
    assert m.cells["l0"].input_size == I + (L - 1) * H
    assert m.cells["l2"].input_size == H + (L - 1) * H
    refs = []
    for layer in range(L):
        cell = m.cells[f"l{layer}"]
        ref = torch_cell(cell.input_size, H, dtype=D64)
        ref.load_state_dict(cell.state_dict())
        refs.append(ref)
    x = torch.randn(T, B, I, dtype=D64)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    out, hidden = m(packed)
    out, _ = pad_packed_sequence(out)
    h_n = hidden[0] if kind == "lstm" else hidden
    for b, (rows, last_h) in enumerate(feedback_reference(refs, x, LENGTHS.tolist(),
                                                         kind == "lstm")):
        torch.testing.assert_close(out[: LENGTHS[b], b], rows, atol=1e-12, rtol=0)
        torch.testing.assert_close(h_n[:, b], torch.stack(last_h), atol=1e-12, rtol=0)


# -- run_cell: one cell along sequences (a tree cell reading a sentence) --------------------
def test_run_cell_is_one_torch_layer_in_every_layout():
    from structrnn.sequence import run_cell

    torch.manual_seed(0)
    ref = nn.LSTM(I, H, bidirectional=True, dtype=D64)
    fwd, bwd = sr.LSTMCell(I, H, dtype=D64), sr.LSTMCell(I, H, dtype=D64)
    for cell, suffix in ((fwd, "l0"), (bwd, "l0_reverse")):
        cell.load_state_dict({n: getattr(ref, f"{n}_{suffix}") for n in
                              ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    x = torch.randn(T, B, I, dtype=D64)
    h0, c0 = (torch.randn(2, B, H, dtype=D64) for _ in range(2))
    want, (h_n, c_n) = ref(x, (h0, c0))
    out, (h, c) = run_cell(fwd, x, (h0[0], c0[0]))
    back, (hb, _) = run_cell(bwd, x, (h0[1], c0[1]), reverse=True)
    assert_all_close([out, back, h, c, hb], [want[..., :H], want[..., H:], h_n[0], c_n[0], h_n[1]])
    # batch first, unbatched, packed with uneven unsorted lengths
    assert_all_close([run_cell(fwd, x.transpose(0, 1), batch_first=True)[0].transpose(0, 1)],
                     [ref(x)[0][..., :H]])
    assert_all_close([run_cell(fwd, x[:, 0])[0]], [ref(x[:, :1])[0][:, 0, :H]])
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    got_out, (got_h, _) = run_cell(fwd, packed)
    want_out, (want_h, _) = ref(packed)
    got_pad, _ = pad_packed_sequence(got_out)
    want_pad, _ = pad_packed_sequence(want_out)
    assert_all_close([got_pad, got_h], [want_pad[..., :H], want_h[0]])


def test_the_constituency_tree_cell_reads_a_sentence_as_an_lstm_and_as_a_chain():
    """TreeLSTM(variant="n-ary").cell along a sequence: each word a node whose one child (slot 0)
    is the previous word's node. That is sr.LSTM with the slot-0 blocks of the tree cell's
    weights, and run_up over the chain tree computes the same states."""
    from structrnn.levels.run import run_up
    from structrnn.sequence import run_cell

    torch.manual_seed(0)
    cell = sr.TreeLSTM(I, H, variant="n-ary", arity=2).cell.double()
    x = torch.randn(T, I, dtype=D64)  # one sentence of T words
    out, (h, c) = run_cell(cell, x)
    # rows i, f_0, g, o of weight_hh (i, f_0, f_1, g, o), columns of slot 0: a plain LSTM
    rows = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 5 * H)])
    lstm = LSTM(I, H, dtype=D64)
    lstm.load_state_dict({"weight_ih_l0": cell.weight_ih, "bias_ih_l0": cell.bias_ih,
                          "weight_hh_l0": cell.weight_hh[rows, :H],
                          "bias_hh_l0": cell.bias_hh[rows]})
    want, (want_h, want_c) = lstm(x)
    assert_all_close([out, h, c], [want, want_h[0], want_c[0]])
    # the chain tree: node t reads word t, its child is node t - 1 in slot 0
    edge_index = torch.tensor([list(range(T - 1)), list(range(1, T))])
    chain_h = run_up(cell, x, edge_index, child_index=torch.zeros(T, dtype=torch.long))
    assert_all_close([chain_h], [out])

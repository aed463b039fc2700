"""Sequence modules leave Python: torch.jit.script (the fused path, as torch.nn's own module),
torch.export with a dynamic batch size and sequence length, and ONNX run in onnxruntime, each
against eager on other sizes than the example."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.testing import assert_close

import structrnn as sr
from structrnn.sequence import Recurrent

I, H = 4, 6

NETWORKS = {
    "lstm": lambda: sr.LSTM(I, H),
    "gru": lambda: sr.GRU(I, H),
    "rnn_relu": lambda: sr.RNN(I, H, nonlinearity="relu"),
    "lstm_bi_batch_first": lambda: sr.LSTM(I, H, bidirectional=True, batch_first=True),
    "lstm_deep_bi_batch_first": lambda: sr.LSTM(I, H, num_layers=2, bidirectional=True,
                                                batch_first=True),
}


def example(model: nn.Module, steps: int, batch: int, with_state: bool):
    """(input, hx) in the model's layout; hx random or None."""
    x = torch.randn((batch, steps, I) if model.batch_first else (steps, batch, I))
    if not with_state:
        return x, None
    h = torch.randn(model.num_layers * (1 + model.bidirectional), batch, H)
    return x, ((h, torch.randn_like(h)) if isinstance(model, nn.LSTM) else h)


def dynamic(model: nn.Module, with_state: bool) -> dict:
    batch, steps = Dim("batch"), Dim("steps")
    shapes = {"input": {0: batch, 1: steps} if model.batch_first else {0: steps, 1: batch}}
    if with_state:
        shapes["hx"] = ({1: batch}, {1: batch}) if isinstance(model, nn.LSTM) else {1: batch}
    return shapes


def flat(out) -> list[torch.Tensor]:
    output, state = out
    return [output] + (list(state) if isinstance(state, tuple) else [state])


# -- torch.export -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, with_state", [("lstm", False), ("gru", True), ("rnn_relu", False),
                                              ("lstm_deep_bi_batch_first", True)])
def test_export_keeps_batch_and_length_dynamic(name, with_state):
    torch.manual_seed(0)
    model = NETWORKS[name]().eval()
    x, hx = example(model, steps=5, batch=3, with_state=with_state)
    args = (x, hx) if with_state else (x,)
    program = torch.export.export(model, args, dynamic_shapes=dynamic(model, with_state))
    # the time loop is one node, not five unrolled steps
    assert any(n.target is torch.ops.higher_order.scan for n in program.graph.nodes)
    exported = program.module()
    for steps, batch in ((9, 7), (1, 2), (2, 1)):
        x, hx = example(model, steps, batch, with_state)
        args = (x, hx) if with_state else (x,)
        with torch.no_grad():
            want = flat(model(*args))
            got = flat(exported(*args))
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_export_of_unbatched_input_keeps_the_length_dynamic():
    model = sr.GRU(I, H, num_layers=2).eval()
    program = torch.export.export(model, (torch.randn(5, I),),
                                  dynamic_shapes={"input": {0: Dim("steps")}})
    for steps in (2, 11):
        x = torch.randn(steps, I)
        for g, w in zip(flat(program.module()(x)), flat(model(x)), strict=True):
            assert_close(g, w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: sr.LSTM(I, H, cell=sr.PeepholeLSTMCell),
    lambda: Recurrent(sr.MGUCell, I, H),
    lambda: Recurrent(sr.CIFGLSTMCell, I, H, recurrent_dropout="zoneout",
                      recurrent_dropout_rate=0.3),
    lambda: sr.GRU(I, I, num_layers=2, residual=True),
], ids=["peephole", "mgu", "cifg_zoneout_eval", "gru_residual"])
def test_export_of_the_generic_path(make):
    model = make().eval()
    program = torch.export.export(model, (torch.randn(5, 3, I),),
                                  dynamic_shapes=dynamic(model, False))
    x = torch.randn(8, 6, I)
    for g, w in zip(flat(program.module()(x)), flat(model(x)), strict=True):
        assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_eager_calls_keep_the_fused_kernel(monkeypatch):
    # the export path is for export only: an eager call still runs torch's fused kernel
    model = sr.LSTM(I, H)

    def no_scan(*args, **kwargs):
        raise AssertionError("the scan path ran eagerly")

    monkeypatch.setattr(type(model), "_scan_forward", no_scan)
    out, _ = model(torch.randn(5, 3, I))
    assert out.grad_fn is not None and model.uses_fused_path


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm_bi_batch_first", "gru", "rnn_relu"])
def test_onnx_runs_in_onnxruntime_on_other_lengths(name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = NETWORKS[name]().eval()
    with_state = name != "rnn_relu"
    x, hx = example(model, steps=5, batch=3, with_state=with_state)
    args = (x, hx) if with_state else (x,)
    program = torch.onnx.export(model, args, dynamo=True, verbose=False,
                                dynamic_shapes=dynamic(model, with_state))
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for steps, batch in ((11, 7), (2, 1)):
        x, hx = example(model, steps, batch, with_state)
        feeds = [x] + (flat((None, hx))[1:] if with_state else [])
        assert len(feeds) == len(names)
        got = session.run(None, {n: t.numpy() for n, t in zip(names, feeds, strict=True)})
        with torch.no_grad():
            want = flat(model(x, hx))
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            assert_close(torch.from_numpy(g), w, atol=1e-5, rtol=1e-5)


# -- TorchScript --------------------------------------------------------------------------------
class Tagger(nn.Module):
    """A user's model with a structrnn network inside."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.out = nn.Linear(rnn.hidden_size * (1 + rnn.bidirectional), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script is deprecated
@pytest.mark.parametrize("name", ["lstm_deep_bi_batch_first", "gru", "rnn_relu"])
def test_jit_script_compiles_the_fused_path(name):
    torch.manual_seed(0)
    model = Tagger(NETWORKS[name]()).eval()
    x, _ = example(model.rnn, steps=5, batch=3, with_state=False)
    want = model(x)
    keys = list(model.state_dict())
    scripted = torch.jit.script(model)
    assert list(scripted.state_dict()) == keys  # torch's names: the same checkpoint loads
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x2, _ = example(model.rnn, steps=8, batch=2, with_state=False)
    with torch.no_grad():
        assert_close(scripted(x), want)
        assert_close(loaded(x2), model(x2))
    # the network alone scripts too, to torch.nn's own script module
    alone = torch.jit.script(NETWORKS[name]())
    assert isinstance(alone, torch.jit.ScriptModule)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_script_of_the_generic_path_says_what_to_use():
    model = sr.LSTM(I, H, recurrent_dropout="zoneout", recurrent_dropout_rate=0.1)
    with pytest.raises(RuntimeError, match=r"fused path only.*torch\.export\.export"):
        torch.jit.script(model)

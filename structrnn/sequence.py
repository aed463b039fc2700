"""``RNN``, ``GRU``, ``LSTM``: drop-ins for ``torch.nn.RNN`` / ``GRU`` / ``LSTM``, on the cells.

Each class *is* its ``torch.nn`` counterpart (a subclass), so the constructor, the parameter
names (``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), the initialisation draws, the
``state_dict``, ``flatten_parameters`` and the forward call (padded or ``PackedSequence``
input, ``batch_first``, unbatched 2-D input, ``h0`` / ``(h0, c0)``) are exactly torch's.

Two ways to run:

* **fused** (the default with the stock cell and no recurrent dropout): PyTorch's own kernel
  (``_VF.lstm`` and friends, cuDNN on a GPU), exactly as ``torch.nn.LSTM`` runs it.
* **generic**: a time loop over a structrnn cell (``cell=MyLSTMCell``, a subclass of the stock
  cell), one cell instance per layer and direction fed with that layer's weights. The input
  projection of a whole layer is one matmul (``cell.project_input``); each step calls
  ``cell.combine`` on the rows still running, so a packed batch never computes past a
  sequence's end and the reverse direction starts each sequence at its own last element.
  ``recurrent_dropout``, ``residual=True`` (with more than one layer), an RNN
  ``nonlinearity="sigmoid"`` and ``force_generic=True`` also take this path.

Any other cell (one whose weights are not torch's, such as :class:`~structrnn.CIFGLSTMCell` or
:class:`~structrnn.MGUCell`) runs in :class:`Recurrent`: the same loop, with the cells holding
their own weights (``cells.l0.weight_ih``, ...).

Deep networks (the two ways the lessons connect stacked layers):

* **stacked** (the default, as ``torch.nn``): layer ``l`` reads every step of layer ``l - 1``;
  ``residual=True`` adds each layer's input to its output from the second layer on (Wu et al.
  2016), so the stack learns corrections to an identity path.
* **feedback** (``Recurrent(..., feedback=True)``): the step ``t`` of every layer also reads the
  states of *all* layers at step ``t - 1`` (the gated-feedback RNN of Chung et al. 2015 with its
  gates fixed open): layer ``l``'s input is ``[h^{l-1}_t, h^k_{t-1} for k != l]``, its own
  ``h^l_{t-1}`` is its state. Only in :class:`Recurrent`: the extra input columns have no place
  in torch's parameter layout, which ``RNN``/``GRU``/``LSTM`` keep. Unidirectional only: with a
  backward direction layer ``l`` at step ``t`` would need layer ``l - 1``'s backward state,
  which needs step ``t + 1`` of every layer, itself waiting on step ``t``: a cycle.

Leaving Python (``docs/architecture.md``): under ``torch.export`` (and so
``torch.onnx.export(..., dynamo=True)``) each layer-direction's time loop is one ``scan`` over
the cell's ``combine`` (``_ScanLoop``), so padded input keeps a dynamic batch size and
sequence length; ``torch.jit.script`` compiles the fused path as the ``torch.nn`` module sharing
these parameters. Eager calls never take the scan.

Recurrent dropout beyond ``torch.nn`` (training only; off by default):

* ``"variational"`` (Gal & Ghahramani 2016): one dropout mask per sequence and layer-direction
  on the layer's inputs and one on its hidden state ``h`` as it enters the recurrence, reused at
  every time step (the "tied" variant: one mask for all gates; the LSTM cell state ``c`` is not
  masked). Inverted scaling, so evaluation uses no mask.
* ``"zoneout"`` (Krueger et al. 2016): each unit of every state tensor (``h``, and ``c`` for the
  LSTM) keeps its previous value with probability ``rate`` at each step, independently per
  step. In evaluation the state is the expectation ``rate * prev + (1 - rate) * new``, as in the
  paper.
"""

from __future__ import annotations

from itertools import accumulate
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from structrnn._checks import format_shape
from structrnn.cells import (
    GRUCell,
    LSTMCell,
    RNNCell,
    RNNCellBase,
    state_from_tuple,
    state_tuple,
)

__all__ = ["RNN", "GRU", "LSTM", "Recurrent", "run_cell", "RECURRENT_DROPOUT"]

RECURRENT_DROPOUT = ("variational", "zoneout")
_STOCK_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

State = tuple[Tensor, ...]  # (h,) or (h, c): one (batch, hidden_size) tensor per state part


class _Packed(NamedTuple):
    """Any input as time-major packed rows: ``data`` (rows, input_size), ``sizes[t]`` the batch
    at step t (non-increasing); the indices of a ``PackedSequence`` (None otherwise)."""

    data: Tensor
    sizes: list[int]
    batched: bool
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


class _DirectionLoop(nn.Module):
    """Runs one cell along one direction of one layer.

    A throwaway wrapper: ``torch.func.functional_call`` binds the layer's flat weights
    (``weight_ih_l1_reverse`` ...) to the cell's own parameter names around the whole loop.
    """

    def __init__(self, cell: RNNCellBase) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, state: State, sizes: list[int], offsets: list[int],
                reverse: bool, h_mask: Tensor | None, zoneout: float,
                training: bool) -> tuple[Tensor, State]:
        """x (N, input) time-major packed rows; state parts (B, H); returns (N, H), state."""
        cell = self.cell
        x_proj = cell.project_input(x)  # one matmul for every time step
        batch = state[0].size(0)
        steps = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
        outs: list = [None] * len(sizes)
        for t in steps:
            b, start = sizes[t], offsets[t]
            prev = state if b == batch else tuple(s[:b] for s in state)
            fed = prev if h_mask is None else (prev[0] * h_mask[:b],) + prev[1:]
            new = state_tuple(cell.combine(x_proj[start:start + b], state_from_tuple(fed), None,
                                           b))
            if zoneout > 0:
                if training:
                    keep = [torch.rand_like(n) < zoneout for n in new]
                    new = tuple(torch.where(k, p, n) for k, p, n in zip(keep, prev, new))
                else:
                    new = tuple(zoneout * p + (1 - zoneout) * n for p, n in zip(prev, new))
            outs[t] = new[0]
            # Rows past their sequence's end keep their state (packed batches sort by length).
            state = new if b == batch else tuple(torch.cat([n, s[b:]]) for n, s in zip(new, state))
        return torch.cat(outs), state


class _ScanLoop(nn.Module):
    """One cell along one direction of one layer as a ``scan`` (a higher-order op that
    ``torch.export`` keeps as one loop node and the ONNX exporter writes as an ONNX ``Scan``),
    so that an exported network takes any sequence length; the export path of
    :meth:`_Sequence.forward`. Padded input only; the weights are bound as in
    :class:`_DirectionLoop`."""

    def __init__(self, cell: RNNCellBase) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, state: State, reverse: bool,
                zoneout: float) -> tuple[Tensor, State]:
        """x (T, B, input) time-major; state parts (B, H); returns (T, B, H), state."""
        from torch._higher_order_ops.scan import scan  # export only: keep it off the import

        cell = self.cell
        steps, batch = x.shape[:2]
        x_proj = cell.project_input(x.reshape(steps * batch, x.size(2))).view(steps, batch, -1)

        def step(carry: list[Tensor], x_t: Tensor) -> tuple[list[Tensor], Tensor]:
            new = state_tuple(cell.combine(x_t, state_from_tuple(tuple(carry)), None,
                                           x_t.size(0)))
            if zoneout > 0:  # evaluation's zoneout: the expectation (see the module docstring)
                new = tuple(zoneout * p + (1 - zoneout) * n for p, n in zip(carry, new))
            # scan forbids aliases between carries and outputs: the output is a copy
            return list(new), new[0].clone()

        # every carry its own tensor (an (h, c) of zeros may be one tensor twice)
        final, out = scan(step, [s.clone() for s in state], x_proj, reverse=reverse)
        return out, tuple(final)


class _Sequence:
    """What ``RNN``, ``GRU``, ``LSTM`` and ``Recurrent`` share: validation with ``ValueError``,
    a choice of cell and the generic path with recurrent dropout and residual connections."""

    _stock_cell: type[RNNCellBase] | None = None
    cell_class: type[RNNCellBase]
    residual: bool = False
    feedback: bool = False

    @property
    def _state_parts(self) -> int:
        """1, or 2 for the ``(h, c)`` of an LSTM cell."""
        return self.cell_class.num_state_tensors

    def _configure(self, cell: type[RNNCellBase], recurrent_dropout: str | None,
                   recurrent_dropout_rate: float, force_generic: bool, residual: bool) -> None:
        """Check and keep the options every network takes."""
        owner = type(self).__name__
        if recurrent_dropout not in (None,) + RECURRENT_DROPOUT:
            raise ValueError(f"{owner}: recurrent_dropout must be None, 'variational' or "
                             f"'zoneout', got {recurrent_dropout!r}")
        if not 0 <= recurrent_dropout_rate < 1:
            raise ValueError(f"{owner}: recurrent_dropout_rate must be in [0, 1), got "
                             f"{recurrent_dropout_rate}")
        self.cell_class = cell
        self.recurrent_dropout = recurrent_dropout
        self.recurrent_dropout_rate = float(recurrent_dropout_rate)
        self.force_generic = force_generic
        self.residual = bool(residual)

    def _layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * (1 + self.bidirectional)

    def _keys(self) -> list[tuple[int, str]]:
        """``(0, "l0")``, ``(0, "l0_reverse")``, ``(1, "l1")``, ...: one cell per layer and
        direction."""
        return [(layer, f"l{layer}{suffix}") for layer in range(self.num_layers)
                for suffix in ("", "_reverse")[: 1 + self.bidirectional]]

    def _setup(self, cell: type[RNNCellBase] | None, recurrent_dropout: str | None,
               recurrent_dropout_rate: float, force_generic: bool, cell_kwargs: dict,
               residual: bool = False) -> None:
        owner = type(self).__name__
        cell = self._stock_cell if cell is None else cell
        if not (isinstance(cell, type) and issubclass(cell, self._stock_cell)):
            raise ValueError(f"{owner}: cell must be {self._stock_cell.__name__} or a subclass "
                             f"of it, got {cell!r}")
        self._configure(cell, recurrent_dropout, recurrent_dropout_rate, force_generic, residual)
        first = self._flat_weights[0]
        cells = {}
        # The cells draw their own initial weights: keep torch's random stream untouched so that
        # the same seed gives the same model as torch.nn (and the same draws after it).
        with torch.random.fork_rng(devices=[]):
            for layer, key in self._keys():
                c = cell(self._layer_input_size(layer), self.hidden_size, bias=self.bias,
                         dtype=first.dtype, **cell_kwargs)
                for name in _STOCK_NAMES:
                    theirs = getattr(c, name)
                    if theirs is None:
                        continue
                    ours = getattr(self, f"{name}_{key}")
                    if theirs.shape != ours.shape:
                        raise ValueError(
                            f"{owner}: cell={cell.__name__} has {name} of shape "
                            f"{format_shape(theirs.shape)}, but layer {key} needs "
                            f"{format_shape(ours.shape)}")
                    # The layer's weights live on the module under torch's names.
                    delattr(c, name)
                cells[key] = c.to(first.device)
        # Stock cells hold no parameters left, so the state_dict is exactly torch's; a user's
        # cell keeps its extra parameters here (``cells.l0.<name>``).
        self.cells = nn.ModuleDict(cells)

    def _fused_math(self) -> bool:
        """True when torch's fused kernel computes what the stock cell does (RNN: not for a
        sigmoid)."""
        return True

    @property
    def uses_fused_path(self) -> bool:
        """True when ``forward`` runs PyTorch's fused kernel (stock cell, no recurrent
        dropout, no residual connections, ``force_generic`` False)."""
        return (self.cell_class is self._stock_cell and self.recurrent_dropout is None
                and not self.force_generic and not (self.residual and self.num_layers > 1)
                and self._fused_math())

    def _reference_weight(self) -> Tensor:
        """A weight whose dtype the input must have."""
        return self._flat_weights[0]

    # -- TorchScript --------------------------------------------------------------------------
    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles in this module's place (also as a sub-module of
        yours): on the fused path the ``torch.nn`` module this one computes as, sharing its
        parameters (same ``state_dict``, same results). TorchScript cannot compile the generic
        path: it calls a Python class of cell chosen at construction, through
        ``torch.func.functional_call``; export that one with ``torch.export`` instead."""
        owner = type(self).__name__
        base = next((k for k in type(self).__mro__ if k in (nn.RNN, nn.GRU, nn.LSTM)), None)
        if base is None or not self.uses_fused_path:
            raise RuntimeError(
                f"structrnn.{owner}: torch.jit.script compiles the fused path only (a stock "
                "cell, no recurrent dropout, no residual connections, force_generic=False); "
                "this network runs its cells in a Python loop, which TorchScript cannot "
                "compile. Use torch.export.export (dynamic batch size and sequence length) or "
                "torch.onnx.export(..., dynamo=True)")
        options = {"num_layers": self.num_layers, "bias": self.bias,
                   "batch_first": self.batch_first, "dropout": self.dropout,
                   "bidirectional": self.bidirectional}
        if base is nn.RNN:
            options["nonlinearity"] = self.nonlinearity
        # on the meta device: no memory and no random draws; the parameters are ours
        twin = base(self.input_size, self.hidden_size, device="meta",
                    dtype=self._flat_weights[0].dtype, **options)
        for name in self._flat_weights_names:
            setattr(twin, name, getattr(self, name))
        return twin.train(self.training)

    def _direction(self, key: str, args: tuple,
                   loop: type[nn.Module] = _DirectionLoop) -> tuple[Tensor, State]:
        """One layer-direction's loop (``loop``: :class:`_DirectionLoop` or, for export,
        :class:`_ScanLoop`): its cell bound to the module's weights of ``key``."""
        names = [n for n in _STOCK_NAMES if self.bias or n.startswith("weight")]
        params = {f"cell.{n}": getattr(self, f"{n}_{key}") for n in names}
        return torch.func.functional_call(loop(self.cells[key]), params, args)

    def _extra(self) -> str:
        s = ""
        if self._stock_cell is not None and self.cell_class is not self._stock_cell:
            s += f", cell={self.cell_class.__name__}"
        if self.recurrent_dropout is not None:
            s += (f", recurrent_dropout={self.recurrent_dropout!r}, "
                  f"recurrent_dropout_rate={self.recurrent_dropout_rate}")
        if self.force_generic:
            s += ", force_generic=True"
        if self.residual:
            s += ", residual=True"
        return s

    # -- validation ---------------------------------------------------------------------------
    def _check(self, input, hx) -> None:
        owner = type(self).__name__
        I = self.input_size
        layout = "(batch, seq_len, input_size)" if self.batch_first else \
            "(seq_len, batch, input_size)"
        if isinstance(input, PackedSequence):
            data = input.data
            if data.dim() != 2 or data.size(1) != I:
                raise ValueError(f"{owner}: the PackedSequence's data must have shape "
                                 f"(*, {I}) (input_size={I}), got {format_shape(data.shape)}")
            batch, batched = int(input.batch_sizes[0]), True
        else:
            if not isinstance(input, Tensor):
                raise ValueError(f"{owner}: input must be a Tensor or a PackedSequence, got "
                                 f"{type(input).__name__}")
            if input.dim() not in (2, 3) or input.size(-1) != I:
                raise ValueError(f"{owner}: input must have shape {layout} = (*, *, {I}) or, "
                                 f"unbatched, (seq_len, input_size) = (*, {I}); got "
                                 f"{format_shape(input.shape)}")
            data, batched = input, input.dim() == 3
            batch = input.size(0 if self.batch_first else 1) if batched else None
        weight = self._reference_weight()
        if data.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(f"{owner}: input dtype {data.dtype} does not match the weights' "
                             f"dtype {weight.dtype}")
        if hx is None:
            return
        names = ("hx",) if self._state_parts == 1 else ("hx[0] (h0)", "hx[1] (c0)")
        if self._state_parts > 1 and not (isinstance(hx, tuple | list) and len(hx) == 2):
            raise ValueError(f"{owner}: hx must be a tuple (h0, c0), got {type(hx).__name__}")
        parts = (hx,) if self._state_parts == 1 else tuple(hx)
        lead = self.num_layers * (1 + self.bidirectional)
        expected = (lead, batch, self.hidden_size) if batched else (lead, self.hidden_size)
        for name, h in zip(names, parts):
            if not isinstance(h, Tensor) or tuple(h.shape) != expected:
                got = format_shape(h.shape) if isinstance(h, Tensor) else type(h).__name__
                raise ValueError(f"{owner}: {name} must have shape {format_shape(expected)} "
                                 "(num_layers * num_directions, batch, hidden_size), got "
                                 f"{got}")

    # -- forward ------------------------------------------------------------------------------
    def forward(self, input, hx=None):
        """Run the network over a batch of sequences.

        Args:
            input: (seq_len, batch, input_size), or (batch, seq_len, input_size) with
                ``batch_first``, or unbatched (seq_len, input_size), or a ``PackedSequence``.
            hx: initial state, (num_layers * num_directions, batch, hidden_size) (without the
                batch dimension for unbatched input); a tuple ``(h0, c0)`` for ``LSTM``.
                None means zeros.

        Returns:
            ``(output, h_n)`` (``(output, (h_n, c_n))`` for ``LSTM``): ``output`` has the layout
            of ``input`` with last dimension num_directions * hidden_size (a ``PackedSequence``
            for packed input); ``h_n``/``c_n`` the last state of every layer and direction,
            shaped like ``hx``.
        """
        self._check(input, hx)
        if torch.compiler.is_exporting() and self._scans(input):
            return self._scan_forward(input, hx)
        if self.uses_fused_path:
            return super().forward(input, hx)
        return self._generic_forward(input, hx)

    # -- export: the time loop as one scan ----------------------------------------------------
    def _scans(self, input) -> bool:
        """Whether the export path takes this call: padded input, and nothing that draws
        random numbers inside the time loop (recurrent dropout in training) or reads other
        layers' states (feedback). Elsewhere export runs the eager code, which fixes the
        sequence length (torch's fused kernels unroll the loop when traced)."""
        if isinstance(input, PackedSequence):
            return False
        return not self.feedback and not (self.training and self.recurrent_dropout is not None
                                          and self.recurrent_dropout_rate > 0)

    def _scan_forward(self, input: Tensor, hx) -> tuple[Tensor, Tensor | State]:
        """What :meth:`forward` computes on padded input, each layer-direction's time loop a
        ``scan`` (:class:`_ScanLoop`): ``torch.export`` and ``torch.onnx.export`` then keep the
        batch size and the sequence length dynamic."""
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
        if self.batch_first:
            x = x.transpose(0, 1)
        D = 1 + self.bidirectional
        if hx is None:
            state0 = tuple(x.new_zeros(self.num_layers * D, x.size(1), self.hidden_size)
                           for _ in range(self._state_parts))
        else:
            state0 = state_tuple(tuple(hx) if self._state_parts > 1 else hx)
            if not batched:
                state0 = tuple(h.unsqueeze(1) for h in state0)
        zoneout = self.recurrent_dropout_rate if self.recurrent_dropout == "zoneout" else 0.0
        layer_in, finals = x, []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                k = layer * D + direction
                out, final = self._direction(
                    f"l{layer}" + ("_reverse" if direction else ""),
                    (layer_in, tuple(s[k] for s in state0), bool(direction), zoneout),
                    loop=_ScanLoop)
                outs.append(out)
                finals.append(final)
            out = outs[0] if D == 1 else torch.cat(outs, 2)
            if self.residual and layer > 0:
                out = out + layer_in
            layer_in = self._between_layers(out, layer)
        hidden = tuple(torch.stack([f[i] for f in finals]) for i in range(self._state_parts))
        output = layer_in.transpose(0, 1) if self.batch_first else layer_in
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            hidden = tuple(h.squeeze(1) for h in hidden)
        return output, state_from_tuple(hidden)

    def _generic_forward(self, input, hx):
        seq = self._as_packed(input)
        state0 = self._initial_state(hx, seq)
        offsets = list(accumulate(seq.sizes[:-1], initial=0))  # first packed row of each step
        layers = self._feedback_layers if self.feedback else self._stacked_layers
        last, hidden = layers(seq.data, seq.sizes, offsets, state0)
        return self._format_output(input, seq, last, hidden)

    def _between_layers(self, out: Tensor, layer: int) -> Tensor:
        """What layer ``layer + 1`` reads: ``out`` with torch's inter-layer dropout."""
        if self.dropout > 0 and self.training and layer < self.num_layers - 1:
            return F.dropout(out, self.dropout, training=True)
        return out

    def _stacked_layers(self, data: Tensor, sizes: list[int], offsets: list[int],
                        state0: State) -> tuple[Tensor, State]:
        """Layer after layer, each over every step (packed rows in, packed rows out)."""
        batch, D = sizes[0], 1 + self.bidirectional
        mode, rate = self.recurrent_dropout, self.recurrent_dropout_rate
        variational = mode == "variational" and self.training and rate > 0
        if variational:  # the sequence of each packed row: one input mask per sequence
            seqs = torch.arange(batch, device=data.device)
            row_seq = torch.cat([seqs[:b] for b in sizes])
        zoneout = rate if mode == "zoneout" else 0.0
        layer_in, finals = data, []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                k = layer * D + direction
                x_in, h_mask = layer_in, None
                if variational:
                    x_in = layer_in * _mask(layer_in, batch, rate)[row_seq]
                    h_mask = _mask(layer_in, batch, rate, self.hidden_size)
                out, final = self._direction(
                    f"l{layer}" + ("_reverse" if direction else ""),
                    (x_in, tuple(s[k] for s in state0), sizes, offsets, bool(direction),
                     h_mask, zoneout, self.training))
                outs.append(out)
                finals.append(final)
            out = outs[0] if D == 1 else torch.cat(outs, 1)
            if self.residual and layer > 0:  # the identity path around every upper layer
                out = out + layer_in
            layer_in = self._between_layers(out, layer)
        hidden = tuple(torch.stack([f[i] for f in finals]) for i in range(self._state_parts))
        return layer_in, hidden

    def _feedback_layers(self, data: Tensor, sizes: list[int], offsets: list[int],
                         state0: State) -> tuple[Tensor, State]:
        """Step after step, every layer at each step: layer ``l`` reads the layer below at
        ``t`` and all other layers at ``t - 1`` (unidirectional; see the module docstring)."""
        batch, L = sizes[0], self.num_layers
        states = [tuple(s[layer] for s in state0) for layer in range(L)]
        outs = []
        for b, start in zip(sizes, offsets, strict=True):
            last_h = [st[0][:b] for st in states]  # every layer's h at t - 1, running rows
            below, new_states = data[start:start + b], []
            for layer in range(L):
                cell = self.cells[f"l{layer}"]
                x_in = torch.cat([below] + last_h[:layer] + last_h[layer + 1:], 1)
                prev = state_from_tuple(tuple(s[:b] for s in states[layer]))
                new = state_tuple(cell.combine(cell.project_input(x_in), prev, None, b))
                out = new[0] + below if self.residual and layer > 0 else new[0]
                below = self._between_layers(out, layer)
                new_states.append(new)
            outs.append(below)
            # rows past their sequence's end keep their state (packed batches sort by length)
            states = [new if b == batch else tuple(torch.cat([n, s[b:]]) for n, s in
                                                   zip(new, old, strict=True))
                      for new, old in zip(new_states, states, strict=True)]
        hidden = tuple(torch.stack([st[i] for st in states]) for i in range(self._state_parts))
        return torch.cat(outs), hidden

    def _as_packed(self, input) -> _Packed:
        """Padded (time- or batch-major, batched or not) or packed input as packed rows."""
        return _packed_rows(input, self.batch_first)

    def _initial_state(self, hx, seq: _Packed) -> State:
        """``hx`` as a tuple of (layers * directions, batch, H) tensors in packed row order
        (zeros when None)."""
        if hx is None:
            zeros = seq.data.new_zeros(self.num_layers * (1 + self.bidirectional), seq.sizes[0],
                                       self.hidden_size)
            return (zeros,) * self._state_parts
        state0 = state_tuple(tuple(hx) if self._state_parts > 1 else hx)
        if not seq.batched:
            state0 = tuple(h.unsqueeze(1) for h in state0)
        if seq.sorted_indices is not None:
            state0 = tuple(h.index_select(1, seq.sorted_indices) for h in state0)
        return state0

    def _format_output(self, input, seq: _Packed, last: Tensor, hidden: State):
        """``(output, h_n)`` in the layout of ``input`` from the last layer's packed rows and the
        final states (the inverse of :meth:`_as_packed` and :meth:`_initial_state`)."""
        if isinstance(input, PackedSequence) and seq.unsorted_indices is not None:
            hidden = tuple(h.index_select(1, seq.unsorted_indices) for h in hidden)
        elif not seq.batched:
            hidden = tuple(h.squeeze(1) for h in hidden)
        return _output_layout(input, seq, last, self.batch_first), state_from_tuple(hidden)


def _packed_rows(input, batch_first: bool) -> _Packed:
    """Padded (time- or batch-major, batched or not) or packed input as time-major packed
    rows."""
    if isinstance(input, PackedSequence):
        data, batch_sizes, sorted_indices, unsorted_indices = input
        # batch_sizes lives on the CPU: no device sync
        return _Packed(data, batch_sizes.tolist(), True, sorted_indices, unsorted_indices)
    x = input
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(0 if batch_first else 1)
    if batch_first:
        x = x.transpose(0, 1)
    steps, batch = x.shape[:2]
    return _Packed(x.reshape(steps * batch, x.size(2)), [batch] * steps, batched, None, None)


def _output_layout(input, seq: _Packed, rows: Tensor, batch_first: bool):
    """Packed output rows (N, F) in the layout of ``input`` (the inverse of
    :func:`_packed_rows`)."""
    if isinstance(input, PackedSequence):
        return PackedSequence(rows, input.batch_sizes, seq.sorted_indices, seq.unsorted_indices)
    output = rows.view(len(seq.sizes), seq.sizes[0], -1)
    if batch_first:
        output = output.transpose(0, 1)
    return output if seq.batched else output.squeeze(0 if batch_first else 1)


def run_cell(cell: RNNCellBase, input, state=None, *, batch_first: bool = False,
             reverse: bool = False):
    """Run one cell along sequences: one layer, one direction, the generic loop of
    :class:`RNN`/:class:`GRU`/:class:`LSTM` with the cell's own weights.

    This is how a cell trained on trees reads a sentence: ``TreeLSTM(variant="n-ary").cell``
    (whose call without ``index`` is the one-child step, the child in slot 0) or the Child-Sum
    ``TreeLSTM(...).cell`` run left to right, word by word, as a sequence LSTM; a chain is a
    tree whose nodes have one child each, so the result is the bottom-up pass over that chain.

    Args:
        cell: any :class:`~structrnn.RNNCellBase` (its ``project_input`` and ``combine``).
        input: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I), or a
            ``PackedSequence``.
        state: the initial state, (B, H) (``(h, c)`` for LSTM cells; (H,) unbatched), or None
            for zeros.
        reverse: read each sequence from its last element to its first.

    Returns:
        ``(output, final)``: ``output`` (T, B, H) in the layout of ``input`` (a
        ``PackedSequence`` for packed input); ``final`` each sequence's state after its own
        last element, (B, H) or ``(h, c)``.
    """
    seq = _packed_rows(input, batch_first)
    if state is None:
        parts = state_tuple(cell.zero_state(seq.sizes[0], seq.data))
    else:
        parts = state_tuple(state)
        if not seq.batched:
            parts = tuple(p.unsqueeze(0) for p in parts)
        if seq.sorted_indices is not None:
            parts = tuple(p.index_select(0, seq.sorted_indices) for p in parts)
    offsets = list(accumulate(seq.sizes[:-1], initial=0))
    rows, final = _DirectionLoop(cell)(seq.data, parts, seq.sizes, offsets, reverse, None, 0.0,
                                       cell.training)
    if seq.unsorted_indices is not None:
        final = tuple(f.index_select(0, seq.unsorted_indices) for f in final)
    elif not seq.batched:
        final = tuple(f.squeeze(0) for f in final)
    return _output_layout(input, seq, rows, batch_first), state_from_tuple(final)


def _mask(like: Tensor, rows: int, rate: float, cols: int | None = None) -> Tensor:
    """Inverted-dropout mask (rows, cols), values 0 or 1 / (1 - rate)."""
    shape = (rows, like.size(-1) if cols is None else cols)
    keep = torch.rand(shape, dtype=like.dtype, device=like.device) >= rate
    return keep.to(like.dtype) / (1 - rate)


class RNN(_Sequence, nn.RNN):
    """Elman RNN, a drop-in for ``torch.nn.RNN`` (``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} +
    b_hh)``) that runs on ``sr.RNNCell`` (or a subclass given as ``cell``).

    Args as ``torch.nn.RNN``; ``nonlinearity`` may also be ``"sigmoid"`` (no fused torch
    kernel: the generic path, same parameters and ``state_dict``). Plus (keyword only):
        cell: the cell class for the generic path (a subclass of :class:`~structrnn.RNNCell`).
        recurrent_dropout: None, ``"variational"`` or ``"zoneout"`` (see the module docstring).
        recurrent_dropout_rate: its rate in [0, 1).
        force_generic: run the generic time loop even with the stock cell.
        residual: from the second layer on, add each layer's input to its output (Wu et al.
            2016; the inter-layer dropout acts before the sum, on what the layer reads); the
            generic path. ``h_n`` holds the cells' own states.

    Shapes: see :meth:`forward`; ``input_size`` I, ``hidden_size`` H.
    """

    _stock_cell = RNNCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 cell: type[RNNCell] | None = None, recurrent_dropout: str | None = None,
                 recurrent_dropout_rate: float = 0.0, force_generic: bool = False,
                 residual: bool = False) -> None:
        if nonlinearity not in ("tanh", "relu", "sigmoid"):
            raise ValueError("RNN: nonlinearity must be 'tanh', 'relu' or 'sigmoid', got "
                             f"{nonlinearity!r}")
        # torch.nn.RNN knows tanh and relu only; its mode is unused off the fused path
        super().__init__(input_size, hidden_size, num_layers,
                         nonlinearity="relu" if nonlinearity == "relu" else "tanh",
                         bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self._setup(cell, recurrent_dropout, recurrent_dropout_rate, force_generic,
                    {"nonlinearity": nonlinearity}, residual)

    def _fused_math(self) -> bool:
        return self.nonlinearity in ("tanh", "relu")

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + self._extra()


class GRU(_Sequence, nn.GRU):
    """Gated recurrent unit network, a drop-in for ``torch.nn.GRU`` that runs on
    ``sr.GRUCell`` (or a subclass given as ``cell``). Extra keyword arguments as :class:`RNN`."""

    _stock_cell = GRUCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, cell: type[GRUCell] | None = None,
                 recurrent_dropout: str | None = None, recurrent_dropout_rate: float = 0.0,
                 force_generic: bool = False, residual: bool = False) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, device=device, dtype=dtype)
        self._setup(cell, recurrent_dropout, recurrent_dropout_rate, force_generic, {}, residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._extra()


class LSTM(_Sequence, nn.LSTM):
    """Long short-term memory network, a drop-in for ``torch.nn.LSTM`` that runs on
    ``sr.LSTMCell`` (or a subclass given as ``cell``, e.g. :class:`~structrnn.PeepholeLSTMCell`).
    Extra keyword arguments as :class:`RNN`.

    ``proj_size > 0`` (LSTM with projections) is not supported and raises NotImplementedError.
    The state is the tuple ``(h, c)``.
    """

    _stock_cell = LSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *,
                 cell: type[LSTMCell] | None = None, recurrent_dropout: str | None = None,
                 recurrent_dropout_rate: float = 0.0, force_generic: bool = False,
                 residual: bool = False) -> None:
        if proj_size > 0:
            raise NotImplementedError(
                f"structrnn.LSTM: proj_size={proj_size} (LSTM with projections) is not "
                "supported; use torch.nn.LSTM, or project the outputs with an nn.Linear")
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, proj_size=0,
                         device=device, dtype=dtype)
        self._setup(cell, recurrent_dropout, recurrent_dropout_rate, force_generic, {}, residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._extra()


class Recurrent(_Sequence, nn.Module):
    """Any structrnn cell along sequences: the generic loop of :class:`RNN`/:class:`GRU`/
    :class:`LSTM` with the cells holding their own weights, for cells whose weights are not
    torch's (:class:`~structrnn.CIFGLSTMCell`, :class:`~structrnn.MGUCell`, a cell of yours).

    ``Recurrent(sr.LSTMCell, I, H, ...)`` computes what ``torch.nn.LSTM`` does with the same
    weights, named ``cells.l0.weight_ih`` instead of ``weight_ih_l0`` (``cells.l0_reverse``...
    for the backward direction).

    Args:
        cell: the cell class, an :class:`~structrnn.RNNCellBase` subclass called as
            ``cell(input_size, hidden_size, bias=..., device=..., dtype=..., **cell_kwargs)``.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        device, dtype: as ``torch.nn.RNN``.
        residual: as :class:`RNN`.
        feedback: layer ``l`` at step ``t`` also reads every other layer's ``h`` at ``t - 1``
            (its input is ``[h^{l-1}_t, h^k_{t-1} for k != l]``, so its cell's input size
            grows by ``(num_layers - 1) * hidden_size``); unidirectional, no recurrent dropout.
        recurrent_dropout, recurrent_dropout_rate: as :class:`RNN`.
        cell_kwargs: passed to every cell (e.g. ``nonlinearity="sigmoid"`` for RNNCell).

    ``forward(input, hx=None)`` as :meth:`LSTM.forward` for a cell whose state is ``(h, c)``,
    as :meth:`GRU.forward` for one whose state is ``h``.
    """

    def __init__(self, cell: type[RNNCellBase], input_size: int, hidden_size: int,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 residual: bool = False, feedback: bool = False,
                 recurrent_dropout: str | None = None, recurrent_dropout_rate: float = 0.0,
                 **cell_kwargs) -> None:
        super().__init__()
        if not (isinstance(cell, type) and issubclass(cell, RNNCellBase)):
            raise ValueError(f"Recurrent: cell must be a subclass of RNNCellBase, got {cell!r}")
        if num_layers < 1 or not 0 <= dropout < 1:
            raise ValueError(f"Recurrent: num_layers must be >= 1 and dropout in [0, 1), got "
                             f"num_layers={num_layers}, dropout={dropout}")
        if feedback and (bidirectional or recurrent_dropout is not None):
            raise ValueError("Recurrent: feedback=True runs one direction without recurrent "
                             "dropout (bidirectional feedback would be a cycle: see "
                             "structrnn.sequence)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.feedback = bidirectional, feedback
        self._configure(cell, recurrent_dropout, recurrent_dropout_rate, True, residual)
        extra = (num_layers - 1) * hidden_size if feedback else 0
        self.cells = nn.ModuleDict({
            key: cell(self._layer_input_size(layer) + extra, hidden_size, bias=bias,
                      device=device, dtype=dtype, **cell_kwargs)
            for layer, key in self._keys()})

    @property
    def uses_fused_path(self) -> bool:
        """Always False: the cells run in the generic loop."""
        return False

    def _reference_weight(self) -> Tensor:
        return self.cells["l0"].weight_hh

    def _direction(self, key: str, args: tuple,
                   loop: type[nn.Module] = _DirectionLoop) -> tuple[Tensor, State]:
        return loop(self.cells[key])(*args)

    def extra_repr(self) -> str:
        s = f"{self.cell_class.__name__}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("feedback", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + self._extra().replace(", force_generic=True", "")

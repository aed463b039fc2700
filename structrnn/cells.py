"""Recurrent cells shared by sequences, trees and graphs.

Every cell is called as ``cell(input, hx=None, *, index=None, size=None)``:

* ``index=None``: one predecessor per row, exactly ``torch.nn.RNNCell`` / ``GRUCell`` /
  ``LSTMCell`` (same call forms, positional and keyword, batched or unbatched; same parameter
  names, shapes, gate order, initialisation and results, so a ``torch.nn`` cell's
  ``state_dict`` loads).
* ``index`` given: ``hx`` has one row per *predecessor*, ``index[j]`` is the result row that
  predecessor ``j`` feeds and ``size`` the number of result rows (defaults to
  ``input.size(0)``).
  Rows without predecessors behave as with a zero state. LSTM cells keep one forget gate per
  predecessor (Child-Sum Tree-LSTM, Tai et al. 2015); GRU and Elman cells sum the predecessor
  states.

For speed on trees, the work splits in two: :meth:`project_input` (one matmul over all nodes)
and :meth:`combine` (per schedule step, no validation, no host synchronisation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn

from structrnn._checks import IndexSpec, check_indices, check_rows, check_shape

__all__ = ["RNNCellBase", "RNNCell", "GRUCell", "LSTMCell", "NaryLSTMCell", "PeepholeLSTMCell",
           "CIFGLSTMCell", "MGUCell"]

LSTMState = tuple[Tensor, Tensor]
State = Tensor | tuple[Tensor, ...]

# What torch's fused cell step (``_torch_step``) computes in place of the cell's methods: a
# subclass that overrides one of them changes the math, so the fused step stands in only where
# :func:`inherits` says all are unchanged. (The tree kernels of structrnn.levels call the input
# methods and replace ``combine`` only.)
FUSED_HOOKS = ("project_input", "_input_gates", "combine")


def inherits(cell: nn.Module, owner: type, names: Sequence[str]) -> bool:
    """True when ``cell`` is an ``owner`` whose class takes every method in ``names`` unchanged
    from ``owner`` (so a kernel written for ``owner`` computes what the cell would)."""
    cls = type(cell)
    return isinstance(cell, owner) and all(getattr(cls, n) is getattr(owner, n) for n in names)


_WARNED: set[Hashable] = set()


def warn_once(message: str, key: Hashable | None = None, stacklevel: int = 2) -> None:
    """A FutureWarning for a deprecated spelling, once per process and ``key`` (default: the
    message); ``stacklevel`` as ``warnings.warn``'s, counted from the caller of this function."""
    key = message if key is None else key
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, FutureWarning, stacklevel=stacklevel + 1)


# -- states: a tensor (h) or a tuple (h, c) -----------------------------------------------------
def state_tuple(state: State) -> tuple[Tensor, ...]:
    """The tensors of a state as a tuple: ``h`` -> ``(h,)``, ``(h, c)`` unchanged."""
    return state if isinstance(state, tuple) else (state,)


def state_from_tuple(parts: Sequence[Tensor]) -> State:
    """The inverse of :func:`state_tuple`: ``(h,)`` -> ``h``, ``(h, c)`` unchanged."""
    return tuple(parts) if len(parts) > 1 else parts[0]


def state_h(state: State | None) -> Tensor | None:
    """What a state shows to others: ``h`` of an ``(h, c)`` pair, else the state (or None)."""
    return state[0] if isinstance(state, tuple) else state


def map_state(state: State | None, fn: Callable[[Tensor], Tensor]) -> State | None:
    """``fn`` applied to every tensor of ``state`` (None stays None)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(t) for t in state)
    return fn(state)


def gather_rows(src: Tensor, index: Tensor | None) -> Tensor:
    """``src[index]``: the row of the result each predecessor feeds (``index=None``: row ``j``
    for predecessor ``j``, so ``src`` itself)."""
    return src if index is None else src[index]


def scatter_sum(src: Tensor, index: Tensor | None, size: int) -> Tensor:
    """Sum rows of ``src`` (M, *) into ``size`` rows by ``index`` (M,); ``index=None`` means
    row ``j`` feeds row ``j`` (one predecessor per row), so ``src`` is returned as it is."""
    if index is None:
        return src
    out = src.new_zeros((size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


class RNNCellBase(nn.Module):
    """Parameters and initialisation as ``torch.nn.RNNCellBase``.

    Subclasses define ``num_chunks`` (gates stacked in ``weight_ih``), ``num_state_tensors``
    (2 for the ``(h, c)`` state of LSTM cells), :meth:`combine` and the single-predecessor fast
    path :meth:`_torch_step`.
    """

    num_chunks: int = 1
    num_state_tensors: int = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 hh_rows: int | None = None, hh_cols: int | None = None,
                 device=None, dtype=None, input_weights: bool = True) -> None:
        """``hh_rows`` x ``hh_cols`` is ``weight_hh``'s shape (default (num_chunks * H, H));
        ``input_weights=False`` leaves out ``weight_ih`` and ``bias_ih`` (a cell whose
        :meth:`project_input` passes the input through)."""
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        hh_rows = self.num_chunks * hidden_size if hh_rows is None else hh_rows
        hh_cols = hidden_size if hh_cols is None else hh_cols
        gate_rows = self.num_chunks * hidden_size

        def parameter(*shape: int, present: bool = True) -> nn.Parameter | None:
            return nn.Parameter(torch.empty(shape, **factory)) if present else None

        # registration order is torch's (the draws of reset_parameters follow it)
        self.register_parameter("weight_ih", parameter(gate_rows, input_size,
                                                       present=input_weights))
        self.register_parameter("weight_hh", parameter(hh_rows, hh_cols))
        self.register_parameter("bias_ih", parameter(gate_rows, present=bias and input_weights))
        self.register_parameter("bias_hh", parameter(hh_rows, present=bias))
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s

    def reset_parameters(self) -> None:
        # Same draws as torch.nn.RNNCellBase: U(-1/sqrt(H), 1/sqrt(H)) in registration order.
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self._uniform_parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _uniform_parameters(self):
        """The parameters :meth:`reset_parameters` draws from U(-1/sqrt(H), 1/sqrt(H)): all of
        them, as torch's cells; a subclass with a parameter of its own range leaves it out."""
        return self.parameters()

    # -- the two halves of a step ------------------------------------------------------------
    def project_input(self, x: Tensor | None) -> Tensor | None:
        """``x @ weight_ih.T + bias_ih``: (N, input_size) -> (N, num_chunks * hidden_size)."""
        if x is None:
            return None
        return F.linear(x, self.weight_ih, self.bias_ih)

    def combine(self, x_proj: Tensor | None, prev, index: Tensor | None, size: int):
        """One step from projected inputs (``size`` rows, or None) and predecessor states;
        ``index=None`` means one predecessor per row (row ``j`` of ``prev`` feeds row ``j``)."""
        raise NotImplementedError

    def zero_state(self, n: int, like: Tensor) -> State:
        """The state of ``n`` rows without predecessors: zeros (n, hidden_size) with ``like``'s
        dtype and device; a tuple of ``num_state_tensors`` of them for LSTM cells."""
        z = like.new_zeros(n, self.hidden_size)
        return z if self.num_state_tensors == 1 else (z,) * self.num_state_tensors

    def _input_gates(self, x_proj: Tensor | None, size: int) -> Tensor:
        """``x_proj``, or what no input contributes (the input bias) as (size, chunks * H)."""
        if x_proj is not None:
            return x_proj
        gates = self.weight_hh.new_zeros(size, self.num_chunks * self.hidden_size)
        return gates if self.bias_ih is None else gates + self.bias_ih

    def _torch_step(self, x: Tensor, prev: State) -> State:
        """torch's fused single-predecessor step (``prev`` given, one row per row of ``x``)."""
        raise NotImplementedError

    # -- public call -------------------------------------------------------------------------
    def forward(self, input: Tensor | None = None, hx: State | None = None, *,
                index: Tensor | None = None, size: int | None = None, **deprecated: Any):
        """Compute the new state of every result row: ``torch.nn.RNNCell``'s call
        (``cell(input)``, ``cell(input, hx)``, ``cell(input=..., hx=...)``), plus the
        many-predecessor call with ``index`` and ``size``.

        Args:
            input: (N, input_size), or unbatched (input_size,) (then ``hx`` is unbatched too and
                no ``index`` is given), or None for no input (then ``size`` is required).
            hx: predecessor states, (M, hidden_size) (a tuple ``(h, c)`` for LSTM cells;
                (hidden_size,) unbatched), or None for a zero state.
            index: (M,) long, the result row each predecessor feeds; None means M == N and
                predecessor ``j`` feeds row ``j``.
            size: number of result rows N (defaults to ``input.size(0)``).

        ``x=`` and ``prev=`` are the deprecated spellings of ``input=`` and ``hx=`` (they warn
        once); any other keyword is a TypeError.

        Returns:
            The new state, (N, hidden_size) ((hidden_size,) unbatched; a tuple ``(h, c)`` for
            LSTM cells).
        """
        input, hx, _ = self._resolve_keywords(input, hx, deprecated)
        return self._call(input, hx, index, size)

    # Old keyword spellings of the call -> today's (each warns once per process).
    _DEPRECATED_KEYWORDS: dict[str, str] = {"x": "input", "prev": "hx"}

    def _resolve_keywords(self, input, hx, deprecated: dict[str, Any],
                          **current: Any) -> tuple[Any, Any, dict[str, Any]]:
        """Map the deprecated keywords of a call onto ``input``, ``hx`` and the subclass's own
        keywords (``current``); an unknown keyword, or one given under both spellings, is a
        TypeError naming it, as Python's own call would raise."""
        if not deprecated:  # the common call: nothing to map
            return input, hx, current
        name = type(self).__name__
        given = {"input": input, "hx": hx, **current}
        for old, value in deprecated.items():
            new = self._DEPRECATED_KEYWORDS.get(old)
            if new is None:
                raise TypeError(f"{name}.forward() got an unexpected keyword argument {old!r}")
            if given[new] is not None:
                raise TypeError(f"{name}.forward() got {old!r} and {new!r}: {old!r} is the "
                                f"deprecated spelling of {new!r}, pass {new!r} alone")
            # stacklevel 5: this method, forward, Module._call_impl, _wrapped_call_impl, the user
            warn_once(f"{name}.forward: the keyword {old!r} is deprecated, use {new!r}",
                      key=(RNNCellBase, old), stacklevel=5)
            given[new] = value
        return given.pop("input"), given.pop("hx"), given

    def _call(self, input: Tensor | None, hx: State | None, index: Tensor | None,
              size: int | None, **extra: Tensor | None):
        """The checked call: ``extra`` holds the subclass's keywords for :meth:`combine`
        (None where not given)."""
        name = type(self).__name__
        if isinstance(hx, list):  # torch's cells take a list [h, c] as well
            hx = tuple(hx)
        unbatched = self._check_forms(input, hx, index, size)
        if unbatched:
            input = input.unsqueeze(0)
            hx = map_state(hx, lambda t: t.unsqueeze(0))
        size = self._result_rows(input, size)
        given = {k: v for k, v in extra.items() if v is not None} if extra else extra
        if index is None:
            if hx is not None:
                self._check_prev(hx, size)
            if given:
                check_indices(self._index_specs(hx, None, size, **given), name)
            if input is not None and not given and self._has_torch_step():
                out = self._torch_step(input, self.zero_state(size, input) if hx is None else hx)
            else:  # index=None: one predecessor per row, the combine's identity case
                out = self.combine(self.project_input(input), hx, None, size, **given)
        else:
            if hx is None:
                raise ValueError(f"{name}: index given but hx is None (index says which result "
                                 "row each row of hx feeds)")
            self._check_prev(hx, None)
            # a user's call: its indices are checked here, all in one host synchronisation
            # (the level loops call combine with indices they built, unchecked)
            check_indices(self._index_specs(hx, index, size, **given), name)
            out = self.combine(self.project_input(input), hx, index, size, **given)
        if unbatched:
            out = map_state(out, lambda t: t.squeeze(0))
        return out

    def _check_forms(self, input: Tensor | None, hx: State | None, index: Tensor | None,
                     size: int | None) -> bool:
        """The dimensions of the call's arguments (their sizes are checked later); True for an
        unbatched call (1-D ``input``)."""
        name = type(self).__name__
        if input is None:
            if size is None:
                raise ValueError(f"{name}: input is None: pass size (the number of result "
                                 "rows) for rows without an input")
        elif not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor or None, got "
                            f"{type(input).__name__}")
        elif input.dim() not in (1, 2):
            raise ValueError(f"{name}: input must be 1-D (input_size,) = ({self.input_size},) "
                             f"or 2-D (batch, input_size) = (*, {self.input_size}), got "
                             f"{tuple(input.shape)}")
        self._check_state_form(hx)
        if input is None or input.dim() == 2:
            return False
        if index is not None:
            raise ValueError(f"{name}: index needs batched input (N, input_size); got "
                             f"unbatched input of shape {tuple(input.shape)}")
        for label, t in self._state_labels(hx) if hx is not None else ():
            if t.dim() != 1:
                raise ValueError(f"{name}: {label} must be 1-D (hidden_size,) = "
                                 f"({self.hidden_size},) with unbatched input, got "
                                 f"{tuple(t.shape)}")
        return True

    def _state_labels(self, hx: State) -> list[tuple[str, Tensor]]:
        """``("hx", h)``, or ``("hx[0]", h), ("hx[1]", c)``: each state tensor with its name."""
        if isinstance(hx, tuple):
            return [(f"hx[{i}]", t) for i, t in enumerate(hx)]
        return [("hx", hx)]

    def _check_state_form(self, hx: State | None) -> None:
        """``hx``: a Tensor for single-state cells, a tuple of ``num_state_tensors`` Tensors
        for the others (LSTM cells: ``(h, c)``)."""
        if hx is None:
            return
        parts = self.num_state_tensors
        if parts == 1:
            if isinstance(hx, Tensor):
                return
            want = "a Tensor (batch, hidden_size)"
        else:
            if (isinstance(hx, tuple) and len(hx) == parts
                    and all(isinstance(t, Tensor) for t in hx)):
                return
            want = f"a tuple of {parts} Tensors (h, c), each (batch, hidden_size)"
        got = f"a tuple of {len(hx)}" if isinstance(hx, tuple) else type(hx).__name__
        raise ValueError(f"{type(self).__name__}: hx must be {want}, got {got}")

    def _result_rows(self, input: Tensor | None, size: int | None) -> int:
        """N: ``input``'s rows (``size``, when given too, must agree), else ``size``."""
        if input is None:
            return size
        check_shape(input, "input", (None, self.input_size), type(self).__name__)
        if size is not None and size != input.size(0):
            raise ValueError(f"{type(self).__name__}: size={size} but input has "
                             f"{input.size(0)} rows; size must equal input.size(0)")
        return input.size(0)

    def _index_specs(self, hx: State, index: Tensor, size: int, **extra) -> list[IndexSpec]:
        """The index arguments of a call with ``index`` (a subclass adds its own, e.g.
        ``child_index``, given in ``extra``)."""
        return [IndexSpec(index, "index", state_h(hx).size(0), size)]

    def _has_torch_step(self) -> bool:
        # The fused torch step stands in for the FUSED_HOOKS only where a subclass overrides
        # none of them (a user's cell that changes the math must run its own methods).
        owner = next(k for k in type(self).__mro__ if "_torch_step" in vars(k))
        return owner is not RNNCellBase and inherits(self, owner, FUSED_HOOKS)

    def _check_prev(self, hx: State, rows: int | None) -> None:
        name = type(self).__name__
        for label, t in self._state_labels(hx):
            check_shape(t, label, (rows, self.hidden_size), name)
        check_rows(state_tuple(hx), "hx", name)


_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


class RNNCell(RNNCellBase):
    """Elman cell, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` as ``torch.nn.RNNCell``
    (``weight_ih`` (H, I), ``weight_hh`` (H, H)); with many predecessors ``h`` is their sum.

    ``nonlinearity`` is ``"tanh"``, ``"relu"`` (torch's two) or ``"sigmoid"`` (the logistic
    unit of the early recurrent-network lessons; no fused torch kernel, so it runs op by op).
    """

    num_chunks = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError("RNNCell: nonlinearity must be 'tanh', 'relu' or 'sigmoid', "
                             f"got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"

    def _torch_step(self, x: Tensor, prev: Tensor) -> Tensor:
        if self.nonlinearity == "sigmoid":  # torch has no fused sigmoid cell
            return self.combine(self.project_input(x), prev, None, x.size(0))
        fn = _VF.rnn_tanh_cell if self.nonlinearity == "tanh" else _VF.rnn_relu_cell
        return fn(x, prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def combine(self, x_proj, prev, index, size):
        x_proj = self._input_gates(x_proj, size)
        h_sum = self.zero_state(size, x_proj) if prev is None else scatter_sum(prev, index, size)
        pre = x_proj + F.linear(h_sum, self.weight_hh, self.bias_hh)
        return _ACTIVATIONS[self.nonlinearity](pre)


class GRUCell(RNNCellBase):
    """Gated recurrent unit as ``torch.nn.GRUCell`` (gate order r, z, n); with many
    predecessors their summed state replaces ``h`` (Child-Sum Tree-GRU)."""

    num_chunks = 3

    def _torch_step(self, x: Tensor, prev: Tensor) -> Tensor:
        return _VF.gru_cell(x, prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def combine(self, x_proj, prev, index, size):
        gx = self._input_gates(x_proj, size)
        h = self.zero_state(size, gx) if prev is None else scatter_sum(prev, index, size)
        gh = F.linear(h, self.weight_hh, self.bias_hh)
        xr, xz, xn = gx.chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class LSTMCell(RNNCellBase):
    """Long short-term memory as ``torch.nn.LSTMCell`` (gate order i, f, g, o); with many
    predecessors it is the Child-Sum Tree-LSTM of Tai et al. (2015):

    ``i, o, g`` from ``x`` and the sum of predecessor ``h``; one forget gate ``f_k`` per
    predecessor from ``x`` and that predecessor's ``h_k``; ``c = i*g + sum_k f_k*c_k``,
    ``h = o*tanh(c)``. The state is the tuple ``(h, c)``.
    """

    num_chunks = 4
    num_state_tensors = 2

    def _torch_step(self, x: Tensor, prev: LSTMState) -> LSTMState:
        return _VF.lstm_cell(x, prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def combine(self, x_proj, prev, index, size):
        H = self.hidden_size
        w_hh, b_hh = self.weight_hh, self.bias_hh
        x_proj = self._input_gates(x_proj, size)
        if prev is None:
            gates = x_proj + (0 if b_hh is None else b_hh)
            i, _, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        h_prev, c_prev = prev
        if index is None:  # one predecessor per row: the plain LSTM step
            i, f, g, o = (x_proj + F.linear(h_prev, w_hh, b_hh)).chunk(4, 1)
            c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c_prev
            return torch.sigmoid(o) * torch.tanh(c), c
        h_sum = scatter_sum(h_prev, index, size)
        # i, g, o see the summed children; each child's forget gate sees only that child.
        gates = x_proj + F.linear(h_sum, w_hh, b_hh)
        i, _, g, o = gates.chunk(4, 1)
        f_pre = x_proj[index, H:2 * H] + F.linear(
            h_prev, w_hh[H:2 * H], None if b_hh is None else b_hh[H:2 * H])
        fc = torch.sigmoid(f_pre) * c_prev
        c = torch.sigmoid(i) * torch.tanh(g) + scatter_sum(fc, index, size)
        return torch.sigmoid(o) * torch.tanh(c), c


class NaryLSTMCell(RNNCellBase):
    """N-ary Tree-LSTM cell (Tai et al. 2015, section 3.2) for ordered children.

    Each of the ``arity`` child slots has its own recurrent matrices and each (parent, slot)
    pair its own forget gate::

        i   = σ(W_i x + Σ_l U_i^l h_l + b_i)       g = tanh(W_g x + Σ_l U_g^l h_l + b_g)
        f_k = σ(W_f x + Σ_l U_f^{kl} h_l + b_f)     o = σ(W_o x + Σ_l U_o^l h_l + b_o)
        c   = i⊙g + Σ_k f_k⊙c_k                   h = o⊙tanh(c)

    Parameters: ``weight_ih`` (4H, I) in gate order i, f, g, o (one ``W_f`` shared by the
    slots), ``weight_hh`` ((3 + arity)·H, arity·H) in row order i, f_0 … f_{arity-1}, g, o,
    columns the concatenated slots. With ``arity=1`` it is exactly ``torch.nn.LSTMCell``.

    Call: ``cell(input, (h, c), index=index, size=size, child_index=child_index)``;
    ``child_index[j]`` is predecessor ``j``'s slot. Missing slots are zero. Without ``index`` it
    is a one-child (slot 0) LSTM step.
    """

    num_chunks = 4
    num_state_tensors = 2

    def __init__(self, input_size: int, hidden_size: int, arity: int = 2, bias: bool = True,
                 device=None, dtype=None) -> None:
        if arity < 1:
            raise ValueError(f"NaryLSTMCell: arity must be >= 1, got {arity}")
        self.arity = arity
        super().__init__(input_size, hidden_size, bias, hh_rows=(3 + arity) * hidden_size,
                         hh_cols=arity * hidden_size, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", arity={self.arity}"

    _DEPRECATED_KEYWORDS = {**RNNCellBase._DEPRECATED_KEYWORDS, "pos": "child_index"}

    def forward(self, input: Tensor | None = None, hx: LSTMState | None = None, *,
                index: Tensor | None = None, size: int | None = None,
                child_index: Tensor | None = None, **deprecated: Any) -> LSTMState:
        """As :meth:`RNNCellBase.forward`, plus ``child_index`` (M,) long: each predecessor's
        slot in ``[0, arity)``, required with ``index`` (``pos=`` is its deprecated
        spelling). Without ``index``, row ``j`` of ``hx`` is row ``j``'s one child, in slot
        ``child_index[j]`` (slot 0 when None)."""
        input, hx, extra = self._resolve_keywords(input, hx, deprecated, child_index=child_index)
        if index is not None and extra["child_index"] is None:
            raise ValueError("NaryLSTMCell: pass child_index (each predecessor's slot in "
                             f"[0, {self.arity})) with index")
        return self._call(input, hx, index, size, **extra)

    def _index_specs(self, hx: LSTMState | None, index: Tensor | None, size: int,
                     child_index: Tensor | None = None) -> list[IndexSpec]:
        specs = [] if index is None else super()._index_specs(hx, index, size)
        if child_index is not None and hx is not None:
            rows = state_h(hx).size(0)
            specs.append(IndexSpec(child_index, "child_index", rows, self.arity))
        return specs

    def combine(self, x_proj, prev, index, size, child_index=None, pos=None):
        # ``pos`` is the slot's name in the level loops of structrnn.levels (internal callers,
        # no warning); ``child_index`` the one of the public call.
        pos = child_index if child_index is not None else pos
        return self._nary_step(x_proj, prev, index, size, pos)

    def _nary_step(self, x_proj, prev, index, size, pos, candidate=None):
        """:meth:`combine`'s arithmetic; ``candidate`` (a module or function, e.g. a dropout)
        transforms the candidate update ``g`` before it enters the memory."""
        H, A = self.hidden_size, self.arity
        w_hh, b_hh = self.weight_hh, self.bias_hh
        x_proj = self._input_gates(x_proj, size)
        if prev is None:
            h_cat = x_proj.new_zeros(size, A * H)
            c_slots = x_proj.new_zeros(size, A, H)
        else:
            h_prev, c_prev = prev
            if index is None:
                index = torch.arange(size, device=h_prev.device)
            if pos is None:
                pos = torch.zeros_like(index)
            slot_row = index * A + pos  # row of (parent, slot) in a (size * A) table
            h_cat = scatter_sum(h_prev, slot_row, size * A).view(size, A * H)
            c_slots = scatter_sum(c_prev, slot_row, size * A).view(size, A, H)
        gh = F.linear(h_cat, w_hh, b_hh)  # (size, (3 + A) H): i, f_0..f_{A-1}, g, o
        xi, xf, xg, xo = x_proj.chunk(4, 1)
        i = torch.sigmoid(xi + gh[:, :H])
        f = torch.sigmoid(xf.unsqueeze(1) + gh[:, H:(1 + A) * H].view(size, A, H))
        g = torch.tanh(xg + gh[:, (1 + A) * H:(2 + A) * H])
        if candidate is not None:
            g = candidate(g)
        o = torch.sigmoid(xo + gh[:, (2 + A) * H:])
        c = i * g + (f * c_slots).sum(1)
        return o * torch.tanh(c), c


# -- variants of the lessons: peepholes, coupled gates, a minimal gated unit ----------------------
# Each keeps the contract above: ``index=None`` is the paper's sequence step; with many
# predecessors the rule of the stock cells carries over (a per-predecessor forget gate for the
# LSTM family, summed states for the single-state MGU), so a chain of one-child nodes is the
# sequence cell. None has an N-ary form: their extra terms multiply a predecessor's state
# elementwise (the peephole p * c, CIFG's coupling 1 - f, MGU's f * h), and with ordered slots
# that needs one such gate per slot plus a rule coupling them that the papers do not define.
def _rows(t: Tensor | None, start: int, stop: int) -> Tensor | None:
    """``t[start:stop]``, None for a missing bias."""
    return None if t is None else t[start:stop]


class PeepholeLSTMCell(LSTMCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000, "Recurrent nets that time and
    count"): the gates also see the cell state through diagonal weights ``p``::

        i = σ(W_i x + U_i h + p_i ⊙ c_prev + b_i)      g = tanh(W_g x + U_g h + b_g)
        f = σ(W_f x + U_f h + p_f ⊙ c_prev + b_f)      c = f ⊙ c_prev + i ⊙ g
        o = σ(W_o x + U_o h + p_o ⊙ c + b_o)           h = o ⊙ tanh(c)

    The output gate peeks at the *new* memory ``c``, the input and forget gates at the old one.
    Parameters: ``torch.nn.LSTMCell``'s (gate order i, f, g, o) plus ``weight_peephole`` (3, H),
    the rows ``p_i, p_f, p_o``, drawn from U(-1/sqrt(H), 1/sqrt(H)) after the others. A
    subclass of :class:`LSTMCell`, so ``sr.LSTM(..., cell=PeepholeLSTMCell)`` runs it along
    sequences (generic path, ``weight_peephole`` under ``cells.l0``).

    Many predecessors (Child-Sum): ``i``, ``g``, ``o`` see the sums of the predecessors' ``h``
    and (``i``) ``c``; predecessor ``k``'s forget gate ``f_k`` sees its own ``h_k`` and ``c_k``;
    ``c = i ⊙ g + Σ_k f_k ⊙ c_k``. The state is ``(h, c)``, each (N, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.weight_peephole = nn.Parameter(torch.empty(3, hidden_size, device=device,
                                                        dtype=dtype))
        # the stock weights were drawn by the base class; a later reset_parameters() draws all
        # of them again in registration order, this one last
        stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
        nn.init.uniform_(self.weight_peephole, -stdv, stdv)

    def combine(self, x_proj, prev, index, size):
        H = self.hidden_size
        w_hh, b_hh = self.weight_hh, self.bias_hh
        p_i, p_f, p_o = self.weight_peephole.chunk(3)  # (1, H) rows
        x_proj = self._input_gates(x_proj, size)
        if prev is None:  # a zero state: the peepholes see c_prev = 0
            prev, index = self.zero_state(size, x_proj), None
        h_prev, c_prev = prev
        gates = x_proj + F.linear(scatter_sum(h_prev, index, size), w_hh, b_hh)
        i, f, g, o = gates.chunk(4, 1)
        if index is not None:  # each predecessor's own forget gate (one extra H x H matmul)
            f = gather_rows(x_proj[:, H:2 * H], index) + F.linear(h_prev, w_hh[H:2 * H],
                                                                   _rows(b_hh, H, 2 * H))
        kept = torch.sigmoid(f + p_f * c_prev) * c_prev
        c = (torch.sigmoid(i + p_i * scatter_sum(c_prev, index, size)) * torch.tanh(g)
             + scatter_sum(kept, index, size))
        return torch.sigmoid(o + p_o * c) * torch.tanh(c), c


class CIFGLSTMCell(RNNCellBase):
    """LSTM with a coupled input and forget gate (CIFG; Greff et al. 2017, "LSTM: A Search Space
    Odyssey"): the input gate is ``1 - f``, so what is written replaces what is forgotten::

        f = σ(W_f x + U_f h + b_f)     g = tanh(W_g x + U_g h + b_g)     o = σ(W_o x + U_o h + b_o)
        c = f ⊙ c_prev + (1 - f) ⊙ g   h = o ⊙ tanh(c)

    Three gate blocks instead of four: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), biases (3H,),
    gate order f, g, o, initialised as torch's cells. (Greff et al. couple the gates of their
    "vanilla" LSTM, which also has peepholes; this cell couples those of ``torch.nn.LSTMCell``.)
    Not a :class:`LSTMCell` (its weights have another shape): run it along sequences with
    :class:`structrnn.sequence.Recurrent`.

    Many predecessors (Child-Sum): the node's own ``f`` (from the summed ``h``) sets the input
    gate ``1 - f``; predecessor ``k`` keeps ``f_k ⊙ c_k`` with its own forget gate from ``h_k``,
    ``c = (1 - f) ⊙ g + Σ_k f_k ⊙ c_k`` (one predecessor: ``f_k = f``, the sequence step).
    The state is ``(h, c)``, each (N, H).
    """

    num_chunks = 3
    num_state_tensors = 2

    def combine(self, x_proj, prev, index, size):
        H = self.hidden_size
        w_hh, b_hh = self.weight_hh, self.bias_hh
        x_proj = self._input_gates(x_proj, size)
        if prev is None:
            prev, index = self.zero_state(size, x_proj), None
        h_prev, c_prev = prev
        gates = x_proj + F.linear(scatter_sum(h_prev, index, size), w_hh, b_hh)
        f, g, o = gates.chunk(3, 1)
        f = torch.sigmoid(f)
        f_each = f if index is None else torch.sigmoid(
            gather_rows(x_proj[:, :H], index) + F.linear(h_prev, w_hh[:H], _rows(b_hh, 0, H)))
        c = (1 - f) * torch.tanh(g) + scatter_sum(f_each * c_prev, index, size)
        return torch.sigmoid(o) * torch.tanh(c), c


class MGUCell(RNNCellBase):
    """Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, "Minimal Gated Unit for Recurrent Neural
    Networks"): a GRU whose reset and update gates are one forget gate ``f``::

        f = σ(W_f x + U_f h + b_f)
        n = tanh(W_n x + U_n (f ⊙ h) + b_n)
        h' = (1 - f) ⊙ h + f ⊙ n

    ``weight_ih`` (2H, I), ``weight_hh`` (2H, H), biases (2H,), gate order f, n, initialised as
    torch's cells. Run it along sequences with :class:`structrnn.sequence.Recurrent`. With many
    predecessors ``h`` is their sum, as for :class:`GRUCell`. The state is ``h`` (N, H).
    """

    num_chunks = 2

    def combine(self, x_proj, prev, index, size):
        w_hh, b_hh = self.weight_hh, self.bias_hh
        x_proj = self._input_gates(x_proj, size)
        h = self.zero_state(size, x_proj) if prev is None else scatter_sum(prev, index, size)
        # the candidate's recurrent matmul reads f ⊙ h, so the two blocks cannot share one
        # (chunk, not slices by H: slices leave sizes in the graph that ONNX export trips on)
        x_f, x_n = x_proj.chunk(2, 1)
        (w_f, w_n), (b_f, b_n) = w_hh.chunk(2), (None, None) if b_hh is None else b_hh.chunk(2)
        f = torch.sigmoid(x_f + F.linear(h, w_f, b_f))
        n = torch.tanh(x_n + F.linear(f * h, w_n, b_n))
        return (1 - f) * h + f * n

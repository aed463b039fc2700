"""The graph-network block (Battaglia et al. 2018): edges, then nodes, then the global vector.

One round of :class:`GraphNetwork` computes::

    e' = phi_e([e, x[sender], x[receiver], u[graph of edge]])
    x' = phi_x([x, aggr_e(e' by receiver), u[batch]])
    u' = phi_u([u, aggr_u(x' by graph), aggr_u(e' by graph)])

An update function ``phi`` is either a plain ``nn.Module``, which gets the concatenation (its own
old attribute first), or a cell of :mod:`structrnn.cells`, which gets the other parts as its
input and its own old attribute as its state -- so a GRU update (GG-NN, Li et al. 2016; MPNN,
Gilmer et al. 2017) or an LSTM update needs no extra code.

LSTM memory. An attribute updated by an LSTM cell is the pair ``(h, c)``, exactly as the state of
``torch.nn.LSTMCell``: pass ``x`` (or ``edge_attr``, ``u``) as a tensor (the memory starts at
zero) or as ``(h, c)``; the block returns ``(h, c)``, and the other update functions see only
``h``. A K-round recurrent use is therefore the plain loop::

    for _ in range(K):
        x, edge_attr, u = gn(x, edge_index, edge_attr, u, batch)

With a ``Data`` in and out, ``h`` is stored under the attribute's name and ``c`` under the name
plus ``_c`` (``x_c``, ``edge_attr_c``, ``u_c``), and read back from there on the next call.

Conversions to and from networkx are in :mod:`structrnn.graphs.convert`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _torch_module
from torch_geometric.data.data import BaseData
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.utils import scatter

from structrnn._checks import check_shape
from structrnn.cells import RNNCellBase, state_h, state_tuple
from structrnn.graphs._reset import reset

__all__ = ["GraphNetwork", "aggregate", "count_graphs", "batch_of", "pool", "check_readout"]

State = Tensor | tuple[Tensor, Tensor]
AGGREGATIONS = ("sum", "mean", "max", "min")
EDGE_INPUTS = ("edge", "sender", "receiver", "global")
NODE_INPUTS = ("node", "edges", "global")
GLOBAL_INPUTS = ("global", "nodes", "edges")


def aggregate(aggr: str | Aggregation, src: Tensor, index: Tensor, size: int) -> Tensor:
    """Reduce the rows of ``src`` (M, F) into ``size`` rows by ``index`` (M,) -> (size, F).

    ``aggr`` is "sum", "mean", "max", "min" or a ``torch_geometric.nn.aggr.Aggregation``.
    Rows that receive nothing are zero for every reduction. The four named reductions are
    ``torch_geometric.utils.scatter`` (``scatter_add_`` / ``scatter_reduce_``), which
    ``torch.export`` and the ONNX exporter (``dynamo=True``) translate with a symbolic ``size``.
    """
    if isinstance(aggr, str):
        return scatter(src, index, dim=0, dim_size=size, reduce=aggr)
    return aggr(src, index, dim_size=size)


def count_graphs(batch: Tensor | None, u: State | None = None,
                 num_graphs: int | None = None) -> int:
    """G, the number of graphs of a batch: ``num_graphs`` when given, else the rows of ``u``
    (G, F_u), else ``batch.max() + 1`` for ``batch`` (N,) (one host synchronisation: a model
    that runs several rounds counts once and passes the count on), else 1 (no batch vector: one
    graph).

    Export: ``batch.max() + 1`` is read with ``Tensor.item()``, which ``torch.export`` (and the
    ONNX exporter built on it) records as a graph operation giving a symbolic size, so an
    exported model counts the graphs of every input it is given. Do not pass ``num_graphs``
    as a Python int when exporting: it would be frozen into the graph as a constant.
    """
    if num_graphs is not None:
        return num_graphs
    if state_h(u) is not None:
        return state_h(u).size(0)
    if batch is None:
        return 1
    return batch.max().item() + 1 if batch.numel() else 0


def pool(readout: str | Aggregation, h: Tensor, batch: Tensor | None,
         num_graphs: int | None = None) -> Tensor:
    """(G, F): the node rows ``h`` (N, F) reduced per graph of ``batch`` (N,) (None: one graph,
    G = 1); G as :func:`count_graphs` finds it."""
    size = count_graphs(batch, None, num_graphs)
    if batch is None:
        batch = h.new_zeros(h.size(0), dtype=torch.long)
    return aggregate(readout, h, batch, size)


def check_readout(readout, owner: str, allowed: Sequence = (None, *AGGREGATIONS)) -> None:
    """``readout`` must be one of ``allowed`` (None: no pooling, the module returns node rows)."""
    if readout not in allowed:
        raise ValueError(f"{owner}: readout must be one of {tuple(allowed)}, got {readout!r}")


def batch_of(data: BaseData) -> tuple[Tensor | None, int | None]:
    """``(batch, num_graphs)`` of a ``Data`` / ``Batch``: a ``Batch`` carries its graph count
    (no host synchronisation); a ``Data`` without ``batch`` is one graph, ``(None, None)``."""
    batch = getattr(data, "batch", None)
    return batch, (getattr(data, "num_graphs", None) if batch is not None else None)


def _check_aggr(aggr, name: str) -> None:
    if isinstance(aggr, str) and aggr in AGGREGATIONS:
        return
    if isinstance(aggr, Aggregation):
        return
    raise ValueError(f"GraphNetwork: {name} must be one of {AGGREGATIONS} or a "
                     f"torch_geometric.nn.aggr.Aggregation, got {aggr!r}")


# -- the model's first Linear: its width, and the split speed-up -------------------------------
def _input_chain(model: nn.Module) -> list[nn.Module]:
    """``model`` and, while the last is a plain non-empty ``nn.Sequential``, its first layer: the
    modules an input passes through first (the last one a Linear when the model starts with
    one)."""
    chain = [model]
    while type(chain[-1]) is nn.Sequential and len(chain[-1]) > 0:
        chain.append(chain[-1][0])
    return chain


def _hooks(module: nn.Module, kinds: Sequence[str]) -> bool:
    return any(getattr(module, f"_{kind}_hooks", None) for kind in kinds)


def _global_hooks(kinds: Sequence[str]) -> bool:
    return any(getattr(_torch_module, f"_global_{kind}_hooks", None) for kind in kinds)


_PRE = ("forward_pre",)
_ANY = ("forward_pre", "forward", "backward_pre", "backward")


def _input_size(model: nn.Module) -> int | None:
    """Expected width of the model's input where the model shows it: a cell's ``input_size``,
    or the ``in_features`` of the Linear it starts with (unless a pre-hook on the way may change
    the input)."""
    if isinstance(model, RNNCellBase):
        return model.input_size
    chain = _input_chain(model)
    if type(chain[-1]) is not nn.Linear or _global_hooks(_PRE):
        return None
    if any(_hooks(m, _PRE) for m in chain):
        return None
    return chain[-1].in_features


def _splittable_linear(model: nn.Module) -> nn.Linear | None:
    """The Linear that ``model`` starts with when the block may apply it part by part: only
    when calling the model would run nothing else on the way, i.e. no hook (forward, pre,
    backward; per module or global) on the model, the Sequentials around the Linear or the
    Linear itself (the split path calls none of them)."""
    chain = _input_chain(model)
    if type(chain[-1]) is not nn.Linear or _global_hooks(_ANY):
        return None
    if any(_hooks(m, _ANY) for m in chain):
        return None
    return chain[-1]


class GraphNetwork(nn.Module):
    """One graph-network block: update every edge, then every node, then every graph's ``u``.

    Args:
        edge_model, node_model, global_model: the update functions (``nn.Module`` or a
            :mod:`structrnn.cells` cell); None keeps that attribute unchanged.
        edge_aggr: reduces the new edges onto their receiving node ("sum", "mean", "max",
            "min" or a ``torch_geometric.nn.aggr.Aggregation``, e.g. ``SoftmaxAggregation``).
        global_aggr: reduces the new nodes and the new edges onto their graph (same choices).
        edge_inputs, node_inputs, global_inputs: which parts each update sees, a subset of
            ``("edge", "sender", "receiver", "global")``, ``("node", "edges", "global")`` and
            ``("global", "nodes", "edges")`` (default: all; order is always as listed). This is
            how the configurations of the paper's Figure 4 are made. A cell always gets its own
            attribute as its state.

    Speed: when a plain model is an ``nn.Linear`` or an ``nn.Sequential`` starting with one, the
    columns of that first layer for a gathered part (``x`` for the edges, ``u`` for edges and
    nodes) are applied before the gather, ``W [a; b[idx]] = W_a a +
    (W_b b)[idx]``: the same function with fewer multiplications, since a graph has fewer nodes
    than edges and fewer graphs than nodes. A hook on the model, on a Sequential around that
    layer or on the layer (or a global module hook) switches this off: the model is then called
    on the concatenation.

    Checks: shapes and widths are checked before any update function runs (a width that does
    not match a cell's ``input_size`` or a leading Linear's ``in_features`` is a ValueError
    naming the model and the parts); an exception raised inside a user's model reaches the
    caller unchanged. Index values (``edge_index``, ``batch``) are not read back, so a round
    with ``num_graphs`` known (given, or ``u``'s rows) never waits for the device.
    """

    def __init__(self, edge_model: nn.Module | None = None, node_model: nn.Module | None = None,
                 global_model: nn.Module | None = None, edge_aggr: str | Aggregation = "sum",
                 global_aggr: str | Aggregation = "mean", *,
                 edge_inputs: Sequence[str] = EDGE_INPUTS,
                 node_inputs: Sequence[str] = NODE_INPUTS,
                 global_inputs: Sequence[str] = GLOBAL_INPUTS) -> None:
        super().__init__()
        _check_aggr(edge_aggr, "edge_aggr")
        _check_aggr(global_aggr, "global_aggr")
        for name, given, allowed in (("edge_inputs", edge_inputs, EDGE_INPUTS),
                                     ("node_inputs", node_inputs, NODE_INPUTS),
                                     ("global_inputs", global_inputs, GLOBAL_INPUTS)):
            if isinstance(given, str) or not set(given) <= set(allowed):
                raise ValueError(f"GraphNetwork: {name} must be a subset of {allowed}, "
                                 f"got {given!r}")
        self.edge_model, self.node_model, self.global_model = edge_model, node_model, global_model
        self.edge_aggr, self.global_aggr = edge_aggr, global_aggr
        self.edge_inputs = tuple(p for p in EDGE_INPUTS if p in edge_inputs)
        self.node_inputs = tuple(p for p in NODE_INPUTS if p in node_inputs)
        self.global_inputs = tuple(p for p in GLOBAL_INPUTS if p in global_inputs)

    def reset_parameters(self) -> None:
        """New weights for the three update functions and a learnable aggregation, each through
        its own ``reset_parameters`` (a user module with parameters and no such method is a
        TypeError, see :func:`structrnn.graphs._reset.reset`)."""
        for name in ("edge_model", "node_model", "global_model", "edge_aggr", "global_aggr"):
            reset(getattr(self, name), name)

    def extra_repr(self) -> str:
        s = []
        for name, default in (("edge_inputs", EDGE_INPUTS), ("node_inputs", NODE_INPUTS),
                              ("global_inputs", GLOBAL_INPUTS)):
            if getattr(self, name) != default:
                s.append(f"{name}={getattr(self, name)}")
        for name in ("edge_aggr", "global_aggr"):
            if isinstance(getattr(self, name), str):  # a module one is printed as a child
                s.append(f"{name}={getattr(self, name)!r}")
        return ", ".join(s)

    def forward(self, x: State | BaseData, edge_index: Tensor | None = None,
                edge_attr: State | None = None, u: State | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None):
        """One round.

        Args:
            x: (N, F_x) node attributes, ``(h, c)`` for an LSTM node model, or a ``Data`` /
               ``Batch`` holding all the arguments (then a new ``Data`` is returned).
            edge_index: (2, E) long, row 0 the sender, row 1 the receiver.
            edge_attr: (E, F_e) or None.
            u: (G, F_u) global attributes, one row per graph, or None.
            batch: (N,) graph of each node; None means one graph.
            num_graphs: G; defaults to ``u.size(0)``, else ``batch.max() + 1`` (one host sync;
               pass it, e.g. ``Batch.num_graphs``, to avoid that and when graphs at the end of
               the batch may have no nodes), else 1.

        Returns:
            ``(x, edge_attr, u)`` after the round, each None where it was None and has no model.
        """
        if isinstance(x, BaseData):
            return self._forward_data(x)
        num_graphs = self._check_inputs(x, edge_index, edge_attr, u, batch, num_graphs)
        sender, receiver = edge_index[0], edge_index[1]
        edge_graph = None if batch is None else batch[sender]
        if self.edge_model is not None:
            edge_attr = self._update_edges(x, edge_attr, u, sender, receiver, edge_graph)
        if self.node_model is not None:
            x = self._update_nodes(x, edge_attr, u, receiver, batch)
        if self.global_model is not None:
            u = self._update_globals(x, edge_attr, u, batch, edge_graph, num_graphs)
        return x, edge_attr, u

    # -- pieces ------------------------------------------------------------------------------
    def _check_inputs(self, x: State, edge_index: Tensor | None, edge_attr: State | None,
                      u: State | None, batch: Tensor | None, num_graphs: int | None) -> int:
        """Shapes of the arguments (no values are read); returns G."""
        if edge_index is None:
            raise ValueError("GraphNetwork: edge_index is required (shape (2, E))")
        check_shape(edge_index, "edge_index", (2, None), "GraphNetwork")
        check_shape(state_h(x), "x", (None, None), "GraphNetwork")
        if state_h(edge_attr) is not None:
            check_shape(state_h(edge_attr), "edge_attr", (edge_index.size(1), None),
                        "GraphNetwork")
        if batch is not None:
            check_shape(batch, "batch", (state_h(x).size(0),), "GraphNetwork")
        num_graphs = count_graphs(batch, u, num_graphs)
        if batch is None and num_graphs != 1:
            raise ValueError(f"GraphNetwork: batch is None (one graph) but num_graphs="
                             f"{num_graphs} (or u has {num_graphs} rows); pass batch")
        if state_h(u) is not None:
            check_shape(state_h(u), "u", (num_graphs, None), "GraphNetwork")
        return num_graphs

    def _update_edges(self, x: State, edge_attr: State | None, u: State | None, sender: Tensor,
                      receiver: Tensor, edge_graph: Tensor | None) -> State:
        h = state_h(x)
        parts = {"edge": (edge_attr, None), "sender": (h, sender), "receiver": (h, receiver),
                 "global": (state_h(u), edge_graph)}
        return self._update("edge", self.edge_model, self.edge_inputs, parts, sender.numel())

    def _update_nodes(self, x: State, edge_attr: State | None, u: State | None,
                      receiver: Tensor, batch: Tensor | None) -> State:
        n, e = state_h(x).size(0), state_h(edge_attr)
        parts = {"node": (x, None), "global": (state_h(u), batch)}
        if e is not None and "edges" in self.node_inputs:
            parts["edges"] = (aggregate(self.edge_aggr, e, receiver, n), None)
        return self._update("node", self.node_model, self.node_inputs, parts, n)

    def _update_globals(self, x: State, edge_attr: State | None, u: State | None,
                        batch: Tensor | None, edge_graph: Tensor | None,
                        num_graphs: int) -> State:
        e = state_h(edge_attr)
        parts = {"global": (u, None)}
        if "nodes" in self.global_inputs:
            parts["nodes"] = (self._by_graph(state_h(x), batch, num_graphs), None)
        if e is not None and "edges" in self.global_inputs:
            parts["edges"] = (self._by_graph(e, edge_graph, num_graphs), None)
        return self._update("global", self.global_model, self.global_inputs, parts, num_graphs)

    def _by_graph(self, src: Tensor, graph: Tensor | None, num_graphs: int) -> Tensor:
        if graph is None:  # one graph and no batch vector: every row belongs to graph 0
            graph = src.new_zeros(src.size(0), dtype=torch.long)
        return aggregate(self.global_aggr, src, graph, num_graphs)

    def _forward_data(self, data: BaseData) -> BaseData:
        batch, num_graphs = batch_of(data)
        x, e, u = self(_with_memory(data, "x"), data.edge_index, _with_memory(data, "edge_attr"),
                       _with_memory(data, "u"), batch, num_graphs)
        out = copy.copy(data)
        for key, value in (("x", x), ("edge_attr", e), ("u", u)):
            _store(out, key, value)
        return out

    def _update(self, what: str, model: nn.Module, inputs: tuple[str, ...],
                parts: dict, rows: int) -> State:
        """Apply ``model`` to the parts named in ``inputs`` (each ``(source, index)``; the part is
        ``source[index]``, or ``source`` when index is None)."""
        if isinstance(model, RNNCellBase):  # own attribute ("edge", "node", "global"): the state
            rest = [(k, parts[k]) for k in inputs if k != what and _present(parts.get(k))]
            return self._cell_update(what, model, rest, parts[what][0], rows)
        used = [(k, parts[k]) for k in inputs if _present(parts.get(k))]
        if not used:
            raise ValueError(f"GraphNetwork: the {what} model has no input (every part of "
                             f"{inputs} is absent)")
        widths = [(k, state_h(src).size(1)) for k, (src, _) in used]
        expected = _input_size(model)
        # checked before the call: whatever the model itself raises reaches the caller as it is
        if expected is not None and expected != sum(w for _, w in widths):
            raise ValueError(_size_message(what, model, expected, widths))
        layer = _splittable_linear(model)
        if layer is not None and any(idx is not None for _, (_, idx) in used):
            return _split_linear_apply(model, layer, used, rows)
        return model(_concat(used, rows))

    def _cell_update(self, what: str, cell: RNNCellBase, rest: list, old: State | None,
                     rows: int) -> State:
        widths = [(k, state_h(src).size(1)) for k, (src, _) in rest]
        if sum(w for _, w in widths) != cell.input_size:
            raise ValueError(_size_message(what, cell, cell.input_size, widths))
        h_old = state_h(old)
        if h_old is not None and h_old.shape != (rows, cell.hidden_size):
            raise ValueError(f"GraphNetwork: the {what} model ({type(cell).__name__}) keeps a "
                             f"state of {cell.hidden_size} features, but the old {what} "
                             f"attribute has shape {tuple(h_old.shape)}; expected "
                             f"({rows}, {cell.hidden_size})")
        if old is not None and not isinstance(old, tuple) and cell.num_state_tensors > 1:
            # LSTM: a plain tensor is h, the memory starts at zero
            old = (old,) + state_tuple(cell.zero_state(rows, old))[1:]
        inp = _concat(rest, rows) if rest else None
        return cell(inp, old, size=None if rest else rows)


def _present(part) -> bool:
    return part is not None and part[0] is not None


class _Gather(torch.autograd.Function):
    """``src[index]`` whose backward is ``torch_geometric.utils.scatter`` (sum): on CPU about
    twice as fast as ``index_select``'s own backward (``index_add_``)."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.rows = src.size(0)
        return src.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return scatter(grad, index, dim=0, dim_size=ctx.rows, reduce="sum"), None


def _gather(src: Tensor, idx: Tensor | None, rows: int) -> Tensor:
    if idx is not None:
        return _Gather.apply(src, idx) if src.requires_grad else src.index_select(0, idx)
    if src.size(0) != rows:  # one graph without a batch vector: broadcast u to every row
        return src.expand(rows, -1)
    return src


def _concat(used: list, rows: int) -> Tensor:
    tensors = [_gather(state_h(src), idx, rows) for _, (src, idx) in used]
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, 1)


def _split_linear_apply(model: nn.Module, layer: nn.Linear, used: list, rows: int) -> Tensor:
    """``model(cat(parts))``, where the first Linear's columns for a gathered part are applied
    before the gather (``(src @ W_k.T)[idx]``): fewer rows to multiply. Other parts go in as
    one concatenation."""
    split, raw, raw_w, start = None, [], [], 0
    for _, (src, idx) in used:
        src = state_h(src)
        w = layer.weight[:, start:start + src.size(1)]
        start += src.size(1)
        if idx is not None:
            term = _gather(src @ w.t(), idx, rows)
            split = term if split is None else split + term
        else:
            raw.append(_gather(src, idx, rows))
            raw_w.append(w)
    if raw:
        inp = raw[0] if len(raw) == 1 else torch.cat(raw, 1)
        w = raw_w[0] if len(raw_w) == 1 else torch.cat(raw_w, 1)
        out = F.linear(inp, w, layer.bias)
        out = out if split is None else out + split
    else:
        out = split if layer.bias is None else split + layer.bias
    return _rest_of(model, out)


def _rest_of(model: nn.Module, out: Tensor) -> Tensor:
    """Run every layer of ``model`` after its first Linear (nested Sequentials included)."""
    if type(model) is nn.Linear:
        return out
    out = _rest_of(model[0], out)
    for layer in list(model)[1:]:
        out = layer(out)
    return out


def _fmt_widths(widths: list) -> str:
    return "[" + ", ".join(f"{k} {w}" for k, w in widths) + "]"


def _size_message(what: str, model: nn.Module, expected: int, widths: list) -> str:
    got = sum(w for _, w in widths)
    kind = "input_size" if isinstance(model, RNNCellBase) else "in_features"
    return (f"GraphNetwork: the {what} model ({type(model).__name__}) expects {expected} input "
            f"features ({kind}={expected}), but its input has {got} = {_fmt_widths(widths)}")


# -- Data in, Data out ------------------------------------------------------------------------
def _with_memory(data: BaseData, key: str) -> State | None:
    value = getattr(data, key, None)
    memory = getattr(data, key + "_c", None)
    return value if value is None or memory is None else (value, memory)


def _store(out: BaseData, key: str, value: State | None) -> None:
    if value is None:
        return
    if isinstance(value, tuple):
        out[key], out[key + "_c"] = value
    else:
        out[key] = value

"""Tree and DAG schedules: which nodes are computed together, and where their predecessors are.

A schedule groups the nodes of a batch of trees into levels (by height for the bottom-up pass,
by depth for the top-down pass), or of a batch of directed acyclic graphs (by the longest path
from a source, or to a sink for the backward pass), and renumbers them so that each level is a
contiguous slice.
It is computed once per batch on the CPU (in a DataLoader worker, see :func:`collate_trees`),
so the model's level loop needs no sorting and no host synchronisation. The node ids of the
edges are checked here, once, on the CPU: the level loops index with the schedule unchecked.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from structrnn._errors import InputError

__all__ = ["Schedule", "TreeSchedule", "DAGSchedule", "make_schedule", "tree_schedule",
           "dag_schedule", "dag_levels", "compute_height", "compute_depth"]


class Schedule(NamedTuple):
    """Levels of one pass, in a sorted numbering where each level is a contiguous slice.

    Attributes:
        order: (N,) node id at each sorted position (``x[order]`` sorts the inputs).
        rank: (N,) sorted position of each node (the inverse permutation of ``order``).
        node_ptr: (L + 1) ints, level ``l`` holds sorted positions ``node_ptr[l]:node_ptr[l+1]``.
        pred: (E,) sorted position of each predecessor, edges grouped by the level they feed.
        target: (E,) position of the fed node *within its level* (the cell's ``index``).
        edge_perm: (E,) original edge id of each scheduled edge (to reorder per-edge data).
        edge_ptr: (L + 1) ints, level ``l`` is fed by scheduled edges ``edge_ptr[l]:edge_ptr[l+1]``.
    """

    order: Tensor
    rank: Tensor
    node_ptr: list[int]
    pred: Tensor
    target: Tensor
    edge_perm: Tensor
    edge_ptr: list[int]

    @property
    def num_levels(self) -> int:
        return len(self.node_ptr) - 1


class TreeSchedule(NamedTuple):
    """Bottom-up (by height, predecessors = children) and top-down (by depth, predecessor =
    parent) schedules of a batch of trees."""

    up: Schedule
    down: Schedule


class DAGSchedule(NamedTuple):
    """The passes of a batch of DAGs (edges u -> v: u comes before v).

    ``forward``: predecessors are the in-neighbours, levels the longest path from a source;
    ``backward``: predecessors are the out-neighbours, levels the longest path to a sink. A
    pass that was not asked for is None."""

    forward: Schedule | None
    backward: Schedule | None


def _check_node_ids(edges: Tensor, num_nodes: int) -> None:
    """Every entry of ``edges`` (a CPU tensor: no device synchronisation) is a node id."""
    if edges.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(edges))
    if lo < 0 or hi >= num_nodes:
        raise ValueError(f"edge_index: node ids must be in [0, {num_nodes}) (num_nodes="
                         f"{num_nodes}), got entries from {lo} to {hi}")


def make_schedule(level: Tensor, src: Tensor, dst: Tensor, check_ids: bool = True) -> Schedule:
    """Group nodes by ``level`` (N,) and the edges ``src -> dst`` (E,) each by the level of
    ``dst``.

    Every edge must go from a lower to a higher level (children before parents).
    ``check_ids=False`` skips the check that every edge names a node (for a caller that has
    made it already).
    """
    level = level.long().cpu()
    src, dst = src.long().cpu(), dst.long().cpu()
    n = level.numel()
    if check_ids:
        _check_node_ids(torch.cat([src, dst]), n)
    order = torch.argsort(level, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    num_levels = int(level.max()) + 1 if n else 0
    node_counts = torch.bincount(level, minlength=num_levels)
    level_start = torch.cumsum(node_counts, 0) - node_counts
    if src.numel() and bool((level[src] >= level[dst]).any()):
        raise ValueError("edge_index: every predecessor must be on a lower level than the node "
                         "it feeds (is the tree cyclic, or is height/edge direction wrong?)")
    edge_level = level[dst]
    edge_perm = torch.argsort(edge_level, stable=True)
    edge_counts = torch.bincount(edge_level, minlength=num_levels)
    d = dst[edge_perm]
    return Schedule(
        order=order,
        rank=rank,
        node_ptr=[0] + torch.cumsum(node_counts, 0).tolist(),
        pred=rank[src[edge_perm]],
        target=rank[d] - level_start[level[d]],
        edge_perm=edge_perm,
        edge_ptr=[0] + torch.cumsum(edge_counts, 0).tolist(),
    )


def _propagate_levels(src: Tensor, dst: Tensor, num_nodes: int, reduce: str,
                      what: str = "a forest of trees") -> Tensor:
    """Longest distance from the sources (nodes with no incoming edge), one vectorised step
    per level: a loop over levels, never over nodes. A cycle is an :class:`InputError` naming
    its nodes (``what`` says what the graph should have been)."""
    level = torch.zeros(num_nodes, dtype=torch.long)
    indeg = torch.bincount(dst, minlength=num_nodes)
    frontier = torch.nonzero(indeg == 0).flatten()
    remaining = indeg.clone()
    done = frontier.numel()
    # edges sorted by source so that a frontier's out-edges are found by searchsorted
    perm = torch.argsort(src, stable=True)
    s_sorted, d_sorted = src[perm], dst[perm]
    while frontier.numel():
        lo = torch.searchsorted(s_sorted, frontier)
        hi = torch.searchsorted(s_sorted, frontier, right=True)
        counts = hi - lo
        if int(counts.sum()) == 0:
            break
        edge_ids = torch.repeat_interleave(lo - torch.cumsum(counts, 0) + counts, counts) + \
            torch.arange(int(counts.sum()))
        targets = d_sorted[edge_ids]
        sources = s_sorted[edge_ids]
        level.scatter_reduce_(0, targets, level[sources] + 1, reduce=reduce)
        remaining -= torch.bincount(targets, minlength=num_nodes)
        frontier = torch.unique(targets[remaining[targets] == 0])
        done += frontier.numel()
    if done != num_nodes:
        # the nodes never reached still wait for a predecessor: they lie on or behind a cycle
        cycle = _find_cycle(src, dst, remaining > 0)
        raise InputError(f"edge_index: the graph has a cycle through node {cycle[0]} "
                         f"({_show_cycle(cycle)}), so it is not {what}")
    return level


def _find_cycle(src: Tensor, dst: Tensor, stuck: Tensor) -> list[int]:
    """The nodes of one cycle, in edge order (``cycle[i] -> cycle[i + 1]``, the last back to
    the first), among ``stuck`` (N,) bool: nodes that a topological sort left, each of which has
    a predecessor that is stuck too.

    Every stuck node points at its smallest stuck predecessor; following these pointers from any
    stuck node reaches a cycle within N steps, found by pointer doubling (log N vectorised steps,
    no loop over nodes). Only the cycle itself, for the message, is then walked node by node."""
    n = stuck.numel()
    both = stuck[src] & stuck[dst]
    pointer = torch.arange(n)
    pointer.scatter_reduce_(0, dst[both], src[both], reduce="amin", include_self=False)
    jump = pointer
    for _ in range(max(n, 1).bit_length()):  # 2 ** steps >= n
        jump = jump[jump]
    start = int(jump[int(torch.nonzero(stuck)[0])])
    back, walk = pointer.tolist(), [start]  # the walk goes from each node to its predecessor
    while back[walk[-1]] != start:
        walk.append(back[walk[-1]])
    return [walk[0], *walk[:0:-1]]  # the same cycle, in the edges' direction


def _show_cycle(cycle: list[int], most: int = 8) -> str:
    """``3 -> 5 -> 3``; a long cycle shows its first nodes and how many it leaves out."""
    if len(cycle) <= most:
        return " -> ".join(map(str, [*cycle, cycle[0]]))
    shown = " -> ".join(map(str, cycle[:most]))
    return f"{shown} -> ... ({len(cycle) - most} more) -> {cycle[0]}"


def compute_height(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Height of every node (0 for leaves, 1 + max over children) from ``edge_index``
    (2, E) child -> parent. Returns (num_nodes,) long, on the CPU."""
    ei = edge_index.long().cpu()
    return _propagate_levels(ei[0], ei[1], num_nodes, "amax")


def compute_depth(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Depth of every node (0 for roots) from ``edge_index`` (2, E) child -> parent.

    Pointer jumping: O(log depth) vectorised steps, so a 100,000-deep chain is cheap."""
    ei = edge_index.long().cpu()
    nodes = torch.arange(num_nodes)
    parent = nodes.clone()
    parent[ei[0]] = ei[1]
    if ei.size(1) != int((parent != nodes).sum()):
        raise ValueError("edge_index: a node has more than one parent, so it is not a forest")
    dist = (parent != nodes).long()
    ancestor = parent
    for _ in range(2 + max(num_nodes, 1).bit_length()):
        if not bool(dist[ancestor].any()):
            return dist
        dist = dist + dist[ancestor]
        ancestor = ancestor[ancestor]
    raise ValueError("edge_index: the graph has a cycle, so it is not a forest of trees")


def tree_schedule(edge_index: Tensor, num_nodes: int, height: Tensor | None = None,
                  depth: Tensor | None = None) -> TreeSchedule:
    """Bottom-up and top-down schedules of a forest given as ``edge_index`` (2, E) child -> parent.

    ``height`` (N,) is used when given (as stored on tree ``Data``); ``depth`` is derived.
    """
    ei = edge_index.long().cpu()
    _check_node_ids(ei, num_nodes)
    if height is None:
        height = compute_height(ei, num_nodes)
    if depth is None:
        depth = compute_depth(ei, num_nodes)
    if height.numel() != num_nodes:
        raise ValueError(f"height must have shape ({num_nodes},), got {tuple(height.shape)}")
    return TreeSchedule(up=make_schedule(height, ei[0], ei[1], check_ids=False),
                        down=make_schedule(depth, ei[1], ei[0], check_ids=False))


def dag_levels(edge_index: Tensor, num_nodes: int, reverse: bool = False) -> Tensor:
    """Topological level of every node of a DAG given as ``edge_index`` (2, E), u -> v meaning
    u comes before v: 0 for a source, else 1 + the largest level of its in-neighbours (the
    longest path from a source). ``reverse`` measures the longest path to a sink instead.
    Returns (num_nodes,) long, on the CPU. A cycle is an :class:`~structrnn.InputError` (a
    ``ValueError``) whose message names a node on it and the cycle."""
    ei = edge_index.long().cpu()
    _check_node_ids(ei, num_nodes)
    src, dst = (ei[1], ei[0]) if reverse else (ei[0], ei[1])
    return _propagate_levels(src, dst, num_nodes, "amax", "a directed acyclic graph")


def dag_schedule(edge_index: Tensor, num_nodes: int, forward: bool = True,
                 backward: bool = True) -> DAGSchedule:
    """The forward and backward :class:`Schedule` of a batch of DAGs, ``edge_index`` (2, E)
    u -> v (PyG's convention: u comes before v). A node with several parents is fine; a cycle
    is an :class:`~structrnn.InputError` naming a node on it. Built on the CPU (one host
    synchronisation when ``edge_index`` is on a GPU)."""
    ei = edge_index.long().cpu()
    fw = bw = None
    if forward:
        fw = make_schedule(dag_levels(ei, num_nodes), ei[0], ei[1], check_ids=False)
    if backward:
        bw = make_schedule(dag_levels(ei, num_nodes, reverse=True), ei[1], ei[0],
                           check_ids=False)
    return DAGSchedule(forward=fw, backward=bw)

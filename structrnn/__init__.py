"""structrnn: one recurrent cell interface for sequences, trees and graphs.

Cells (:mod:`structrnn.cells`) are torch.nn cells, called as ``cell(input, hx=None, *,
index=None, size=None)``; the same cell runs along a sequence (:class:`LSTM`), bottom-up over a
tree (:class:`TreeLSTM`) or as the update function of a graph network (:class:`GraphNetwork`).
The layout, the data layout of tree and graph batches and the rules between the sub-packages
are in ``docs/architecture.md``.

``import structrnn`` itself imports nothing heavy: every public name is imported on first use
(``sr.LSTM`` loads PyTorch and :mod:`structrnn.sequence`; ``sr.GraphNetwork`` also PyTorch
Geometric), so that the ``structrnn`` command answers ``--help`` at once. Optional dependencies
(RDKit, nltk, networkx, matplotlib, tensorboard) are imported only where a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structrnn._errors import InputError
from structrnn._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; loaded lazily below
    from structrnn.cells import (
        CIFGLSTMCell,
        GRUCell,
        LSTMCell,
        MGUCell,
        NaryLSTMCell,
        PeepholeLSTMCell,
        RNNCell,
        RNNCellBase,
    )
    from structrnn.crf import CRF
    from structrnn.export import export_model
    from structrnn.graphs import (
        DMPNN,
        GIN,
        GNGRU,
        MPNN,
        DeepSets,
        EncodeProcessDecode,
        GraphIndependent,
        GraphNetwork,
        InteractionNetwork,
        NonLocal,
        RelationNetwork,
    )
    from structrnn.graphs.dag import DAGRecurrent
    from structrnn.levels.run import run_down, run_schedule, run_up
    from structrnn.levels.schedule import tree_schedule
    from structrnn.sequence import GRU, LSTM, RNN
    from structrnn.tasks.predictor import Predictor, load
    from structrnn.trees.loader import TreeLoader, collate_trees
    from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
    from structrnn.trees.parser import Parser
    from structrnn.trees.ptb import ParseError, PTBFile, read_ptb_file, write_ptb_file
    from structrnn.trees.tree import Tree
    from structrnn.trees.vocab import Vocab

__all__ = [
    "__version__", "InputError",
    "RNNCellBase", "RNNCell", "GRUCell", "LSTMCell", "NaryLSTMCell",
    "PeepholeLSTMCell", "CIFGLSTMCell", "MGUCell",
    "RNN", "GRU", "LSTM", "CRF",
    "Tree", "ParseError", "read_ptb_file", "write_ptb_file", "PTBFile", "Vocab",
    "TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN", "BiTreeLSTM", "run_up", "run_down",
    "run_schedule", "tree_schedule", "collate_trees", "TreeLoader", "Parser",
    "GraphNetwork", "GraphIndependent", "InteractionNetwork", "DeepSets", "RelationNetwork",
    "MPNN", "NonLocal", "EncodeProcessDecode", "GIN", "DMPNN", "GNGRU", "DAGRecurrent",
    "load", "Predictor", "export_model",
]

# every public name is imported on first access (PEP 562)
__getattr__, __dir__ = lazy_exports(__name__, {
    "structrnn.cells": ["RNNCellBase", "RNNCell", "GRUCell", "LSTMCell", "NaryLSTMCell",
                        "PeepholeLSTMCell", "CIFGLSTMCell", "MGUCell"],
    "structrnn.sequence": ["RNN", "GRU", "LSTM"],
    "structrnn.crf": ["CRF"],
    # models out of Python: torch.export and ONNX (docs/architecture.md, "Export")
    "structrnn.export": ["export_model"],
    "structrnn.levels.run": ["run_up", "run_down", "run_schedule"],
    "structrnn.levels.schedule": ["tree_schedule"],
    "structrnn.trees.tree": ["Tree"],
    "structrnn.trees.ptb": ["ParseError", "read_ptb_file", "write_ptb_file", "PTBFile"],
    "structrnn.trees.vocab": ["Vocab"],
    "structrnn.trees.models": ["TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN", "BiTreeLSTM"],
    "structrnn.trees.loader": ["TreeLoader", "collate_trees"],
    "structrnn.trees.parser": ["Parser"],
    "structrnn.graphs.network": ["GraphNetwork"],
    "structrnn.graphs.dag": ["DAGRecurrent"],
    "structrnn.graphs.models": ["GraphIndependent", "InteractionNetwork", "DeepSets",
                                "RelationNetwork", "MPNN", "NonLocal", "EncodeProcessDecode"],
    "structrnn.graphs.gin": ["GIN"],
    "structrnn.graphs.dmpnn": ["DMPNN"],
    "structrnn.graphs.gngru": ["GNGRU"],
    # trained models: a run folder or an exported file -> a predictor (docs/architecture.md)
    "structrnn.tasks.predictor": ["load", "Predictor"],
}, submodules=["cells", "sequence", "levels", "trees", "graphs", "datasets", "training", "viz",
               "tasks"])
# the plumbing above is no public name: ``dir(structrnn)`` shows the public API alone
del annotations, TYPE_CHECKING, lazy_exports


def _version() -> str:
    """The installed distribution's version; in a source tree that is not installed, the one
    ``pyproject.toml`` declares (``0+unknown`` when neither is there)."""
    import re
    from importlib import metadata
    from pathlib import Path

    try:
        return metadata.version("structrnn")
    except metadata.PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8")
    except OSError:
        return "0+unknown"
    # the [project] table runs to the next header; tomllib is 3.11+ and we support 3.10
    table = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = table and re.search(r"^version\s*=\s*[\"']([^\"']+)[\"']", table.group(1), re.M)
    return found.group(1) if found else "0+unknown"


__version__: str = _version()

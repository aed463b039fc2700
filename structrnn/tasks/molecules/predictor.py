"""A trained molecule or TU run as a predictor: SMILES, networkx graphs or PyG ``Data`` in,
targets in real units (or class probabilities) out.

::

    import structrnn as sr

    esol = sr.load("runs/esol")                  # every seed's best.pt: an ensemble
    esol.predict(["CCO", "not-a-smiles"])
    # [{"input": "CCO", "measured log solubility in mols per litre": 0.41,
    #   "measured log solubility in mols per litre_std": 0.07, "error": None},
    #  {"input": "not-a-smiles", "measured log ...": None, "..._std": None,
    #   "error": "invalid SMILES 'not-a-smiles': RDKit could not parse it (syntax error)"}]
    esol.predict_file("new.csv", "preds.csv")    # the CSV with prediction columns added
    esol.save("esol.pt")                         # one file; sr.load("esol.pt") reads it back
    esol.export("esol.onnx", format="onnx")      # the ensemble for onnxruntime (deployed.py)

A run trained on several seeds (and folds, for TU sets) is an ensemble: each member puts its
output back into real units with its own training split's target mean and standard deviation
(and, with ``--global-features rdkit``, maps the input's RDKit descriptors through its own
training molecules' distribution); the prediction is the members' mean and ``<target>_std`` the
standard deviation of the members' predictions (the population one, as Chemprop's ensemble
variance). A classifier returns the members' mean class probabilities: a TU run ``label`` and
``probs``; a molecule classification per task the probability of the positive class (binary,
with ``<task>_std`` for an ensemble) or the class and ``<task>_p<k>`` for each class k
(multi-class). Members tuned to different sizes (``--tune``) each keep their own model.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from structrnn._errors import InputError
from structrnn.datasets.molecules.graphs import FEATURISER_VERSION
from structrnn.tasks import predictor as base
from structrnn.tasks.molecules.data import unit_names
from structrnn.tasks.molecules.model import MoleculeModel
from structrnn.tasks.molecules.uncertainty import interval_columns, read_calibration
from structrnn.tasks.predictor import Deployable, Predictor, load_weights, write_output
from structrnn.training.checkpoint import load_checkpoint

__all__ = ["MoleculePredictor", "PREDICTOR", "Member"]

# the molecules export traces on (sizes apart, so that no two dimensions look equal)
EXPORT_EXAMPLES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1")


@dataclass
class Member:
    """What one model of the ensemble needs beside its weights.

    Attributes:
        name: its unit (``seed0``, ``seed1-fold3`` ...).
        mean, std: (T,) the training split's target scaling (regression), else None.
        reference: (R, D) the training molecules' raw RDKit descriptors (``--global-features
            rdkit``), else None.
        model_args: its own :class:`MoleculeModel` arguments (units tuned apart differ), or
            None for the run's.
    """

    name: str
    mean: Tensor | None = None
    std: Tensor | None = None
    reference: Tensor | None = None
    model_args: dict[str, Any] | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain values and tensors for the exported file (absent parts left out)."""
        state: dict[str, Any] = {"name": self.name}
        for key, value in (("target_mean", self.mean), ("target_std", self.std),
                           ("descriptor_reference", self.reference)):
            if value is not None:
                state[key] = value.cpu()
        if self.model_args is not None:
            state["model_args"] = dict(self.model_args)
        return state

    @classmethod
    def from_state(cls, name: str, state: dict) -> Member:
        """From a best.pt or an exported member (the keys of :meth:`to_state`), on the CPU
        (where the descriptors are computed; the scaling moves to the models' device)."""
        mean, std, reference = (None if state.get(k) is None else state[k].cpu() for k in
                                ("target_mean", "target_std", "descriptor_reference"))
        return cls(name, mean, std, reference, state.get("model_args"))


def infer_model_args(config: dict, state: dict) -> dict[str, Any]:
    """The :class:`MoleculeModel` arguments of a best.pt written before it stored them: the
    layer sizes from the weights, the rest from the run's config."""
    weights = [v for k, v in state["model"].items() if k.endswith("weight") and v.dim() == 2]
    head = [v for k, v in state["model"].items() if k.startswith("head.") and v.dim() == 2]
    reference = state.get("descriptor_reference")
    # both node models embed the atoms first and the bonds second
    return {"node_in": int(weights[0].size(1)), "edge_in": int(weights[1].size(1)),
            "out_channels": int(head[-1].size(0)), "hidden": config["hidden"],
            "steps": config["steps"], "model": config["model"], "readout": config["readout"],
            "dropout": config.get("dropout", 0.0),
            "global_in": 0 if reference is None else int(reference.size(1))}


def smiles_error(smiles: str) -> str:
    """Why RDKit cannot read ``smiles``: a syntax error or its sanitisation message (a valence
    or aromaticity problem)."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles.strip(), sanitize=False)
        if mol is None:
            return f"invalid SMILES {smiles!r}: RDKit could not parse it (syntax error)"
        if mol.GetNumAtoms() == 0:
            return f"invalid SMILES {smiles!r}: no atoms"
        try:
            Chem.SanitizeMol(mol)
        except Exception as err:  # noqa: BLE001 - RDKit raises several kinds; all are the reason
            return f"invalid SMILES {smiles!r}: {err}"
    return f"invalid SMILES {smiles!r}: RDKit could not read it"


def _feature(attrs: dict, key: str, width: int, where: str) -> Tensor:
    """(width,) features of a networkx node or edge: its ``key`` (``x`` / ``edge_attr``), or a
    class index ``label`` one-hot encoded (the TU files' node and edge labels)."""
    if key in attrs:
        value = torch.as_tensor(attrs[key], dtype=torch.float).flatten()
        if value.numel() != width:
            raise ValueError(f"{where}: '{key}' has {value.numel()} values, the model expects "
                             f"{width}")
        return value
    if "label" in attrs:
        label = int(attrs["label"])
        if not 0 <= label < width:
            raise ValueError(f"{where}: label {label} is not in 0..{width - 1}")
        return torch.nn.functional.one_hot(torch.tensor(label), width).float()
    raise ValueError(f"{where}: no '{key}' ({width} numbers) and no 'label' (0..{width - 1})")


def from_networkx_graph(g, node_in: int | None, edge_in: int) -> Data:
    """A networkx graph as the model's input: nodes numbered in ``g.nodes`` order, every
    undirected edge in both directions; features from :func:`_feature` (none for the nodes
    when ``node_in`` is None, none for the edges when ``edge_in`` is 0); ``g.graph["smiles"]``
    kept (the RDKit descriptors of ``--global-features rdkit`` need it)."""
    index = {v: i for i, v in enumerate(g.nodes)}
    if not index:
        raise ValueError("the graph has no nodes")
    x = None if node_in is None else torch.stack(
        [_feature(a, "x", node_in, f"node {v!r}") for v, a in g.nodes(data=True)])
    pairs, feats = [], []
    for a, b, attrs in g.edges(data=True):
        f = (_feature(attrs, "edge_attr", edge_in, f"edge ({a!r}, {b!r})") if edge_in
             else torch.zeros(0))
        pairs.append((index[a], index[b]))
        feats.append(f)
        if not g.is_directed():
            pairs.append((index[b], index[a]))
            feats.append(f)
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    edge_attr = torch.stack(feats) if feats else torch.zeros(0, edge_in)
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr if edge_in else None,
                num_nodes=len(index))
    if g.graph.get("smiles"):
        data.smiles = str(g.graph["smiles"])
    return data


class MoleculePredictor(Predictor):
    """The predictor of ``structrnn train molecules`` and ``structrnn train tu`` runs.

    Attributes (beside :class:`~structrnn.tasks.predictor.Predictor`'s):
        target_names: the T targets (``["class"]`` for a TU set).
        kind: ``"regression"`` or ``"classification"``.
        classes: per target its number of classes (classification), else None.
        model_args: the first member's :class:`MoleculeModel` arguments (the input widths are
            every member's).
        members: one :class:`Member` per model, in the run's unit order.
        featuriser: ``FEATURISER_VERSION`` of the atom and bond features (None for TU sets).
    """

    tasks: ClassVar[tuple[str, ...]] = ("molecules", "tu")

    def __init__(self, task: str, config: dict, models: Sequence[torch.nn.Module],
                 device: torch.device, *, members: Sequence[Member], target_names: list[str],
                 kind: str, model_args: dict[str, Any], featuriser: str | None,
                 classes: list[int] | None = None, calibration: dict | None = None) -> None:
        super().__init__(task, config, models, device)
        # --conformal: the quantiles calibrated on the validation split (read_calibration)
        self.calibration = calibration
        self.members = list(members)
        self.target_names, self.kind = list(target_names), kind
        if kind == "classification" and classes is None:
            classes = [int(model_args["out_channels"])]  # a TU run before best.pt held them
        self.classes = None if classes is None else [int(c) for c in classes]
        self.model_args, self.featuriser = dict(model_args), featuriser
        self._scales = [(None if m.mean is None else m.mean.to(device),
                         None if m.std is None else m.std.to(device)) for m in self.members]

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def _build(cls, task: str, config: dict, device: torch.device, states: list[dict],
               members: list[Member], common: dict, where: str) -> MoleculePredictor:
        """Check what predicting needs and rebuild the models from their state dicts."""
        kind, names = common.get("kind"), common.get("target_names")
        featuriser = common.get("featuriser")
        if kind not in ("regression", "classification") or not names:
            raise InputError(f"{where} lacks the target names and kind: it was trained before "
                             "best.pt held them; retrain the run with this structrnn")
        if task == "molecules" and featuriser not in (None, FEATURISER_VERSION):
            raise InputError(f"{where} was made with the featuriser {featuriser!r}, this "
                             f"structrnn featurises molecules with {FEATURISER_VERSION!r}: its "
                             "predictions would be wrong; retrain, or predict with the "
                             "structrnn version that trained it")
        for member in members:
            if kind == "regression" and (member.mean is None or member.std is None):
                raise InputError(f"{where} ({member.name}) lacks the target scaling "
                                 "(target_mean, target_std): it was trained before best.pt held "
                                 "it; retrain the run with this structrnn (the weights alone "
                                 "cannot give predictions in real units)")
            if config.get("global_features") == "rdkit" and member.reference is None:
                raise InputError(f"{where} ({member.name}) lacks the descriptor reference of "
                                 "--global-features rdkit: it was trained before best.pt held "
                                 "it; retrain the run with this structrnn")
        shared = common.get("model_args") or infer_model_args(config, states[0])
        models = [load_weights(MoleculeModel(**(m.model_args or shared)), state["model"],
                               f"{where} ({m.name})")
                  for state, m in zip(states, members, strict=True)]
        return cls(task, config, models, device, members=members, target_names=names,
                   kind=kind, model_args=members[0].model_args or shared,
                   featuriser=featuriser or (FEATURISER_VERSION if task == "molecules" else None),
                   classes=common.get("classes"), calibration=common.get("calibration"))

    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> MoleculePredictor:
        """Every unit's ``RUN/units/NAME/best.pt``: one model each (an ensemble when the run
        has several seeds or folds)."""
        names = unit_names(config)
        if not names:
            raise InputError(f"{folder}/config.json names no seeds: not a molecule run")
        states, members = [], []
        for name in names:
            path = folder / "units" / name / "best.pt"
            if not path.is_file():
                raise InputError(f"{path}: missing; the run has not finished unit {name!r} "
                                 "(continue it with --resume)")
            state = load_checkpoint(path, map_location="cpu")
            states.append(state)
            members.append(Member.from_state(name, state))
        task = config.get("task") or ("tu" if config.get("dataset") == "mutag" else "molecules")
        common = {**states[0], "calibration": read_calibration(folder)}
        return cls._build(task, config, device, states, members, common,
                          f"{folder}/units/{names[0]}/best.pt")

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> MoleculePredictor:
        """The file :meth:`save` wrote."""
        missing = [k for k in ("members", "target_names", "kind", "model_args") if k not in state]
        if missing:
            raise InputError(f"the model file lacks {', '.join(missing)}")
        if len(state["members"]) != len(state["models"]):
            raise InputError("the model file holds a different number of models and members")
        members = [Member.from_state(m["name"], m) for m in state["members"]]
        if state["task"] == "molecules" and state.get("featuriser") is None:
            raise InputError("the model file does not name its featuriser version")
        states = [{"model": weights} for weights in state["models"]]
        return cls._build(state["task"], state["config"], device, states, members, state,
                          "the model file")

    def export_state(self) -> dict[str, Any]:
        """Target names, kind, model arguments, featuriser version and, per model, its target
        scaling and descriptor reference."""
        state: dict[str, Any] = {"target_names": self.target_names, "kind": self.kind,
                                 "model_args": self.model_args,
                                 "members": [m.to_state() for m in self.members]}
        if self.classes is not None:
            state["classes"] = self.classes
        if self.featuriser is not None:
            state["featuriser"] = self.featuriser
        if self.calibration is not None:
            state["calibration"] = self.calibration
        return state

    def deployable(self, examples: Sequence[str] = EXPORT_EXAMPLES, **options: Any
                   ) -> Deployable:
        """Every member with its readout, descriptor normalisation, target scaling and the
        ensemble mean as one module (:class:`~structrnn.tasks.molecules.deployed.
        DeployedMolecules`; its docstring lists the inputs and outputs), traced on the
        molecules ``examples`` (SMILES) with dynamic numbers of atoms, bonds and molecules."""
        from torch.export import Dim

        from structrnn.tasks.molecules.deployed import (
            INPUT_NAMES,
            OUTPUT_NAMES,
            DeployedMolecules,
            graph_inputs,
        )

        if options:
            raise InputError(f"export: unknown option(s) {', '.join(options)} for a molecule run")
        if self.task != "molecules":
            raise InputError(f"format: a {self.task!r} run exports only format='structrnn' "
                             "(its graphs come from Python, not SMILES)")
        module = DeployedMolecules([copy.deepcopy(m).cpu() for m in self.models], self.kind,
                                   [m.mean for m in self.members], [m.std for m in self.members],
                                   [m.reference for m in self.members], self.classes).eval()
        rows = [self.read_input(s, {}) for s in examples]
        raw = torch.cat([r for _, r in rows]) if module.descriptors else None
        inputs = graph_inputs([g for g, _ in rows], raw)
        atoms, bonds, molecules = Dim("atoms", min=2), Dim("bonds", min=2), Dim("molecules")
        shapes = ({0: atoms}, {1: bonds}, {0: bonds}, {0: atoms}, {0: molecules + 1})
        if raw is not None:
            shapes = (*shapes, {0: molecules})
        names = list(INPUT_NAMES[:len(inputs)])
        meta = {"structrnn.task": self.task, "structrnn.kind": self.kind,
                "structrnn.targets": self.target_names,
                "structrnn.units": "real units (the targets' own), members' mean"
                if self.kind == "regression" else "class probabilities, per task side by side",
                "structrnn.classes": self.classes, "structrnn.featuriser": self.featuriser,
                "structrnn.members": [m.name for m in self.members],
                "structrnn.inputs": names, "structrnn.outputs": list(OUTPUT_NAMES),
                "structrnn.docs": "structrnn.tasks.molecules.deployed"}
        return Deployable(module, inputs, shapes, names, list(OUTPUT_NAMES), meta)

    # -- inputs -----------------------------------------------------------------------------------
    def _graph(self, item: Any) -> Data:
        """One input as the model's graph; ValueError with the reason when it cannot be."""
        node_in, edge_in = self.model_args["node_in"], self.model_args["edge_in"]
        if self.model_args.get("node_encoding", "features") == "degree":
            node_in = None  # the model computes one-hot degrees from the edges
        what = ("(structrnn's atom featuriser)" if self.task == "molecules"
                else f"(the node labels of {self.config.get('tu_name', 'the TU set')})")
        if isinstance(item, str):
            from structrnn.datasets.molecules.graphs import from_smiles

            if not item.strip():
                raise ValueError("empty SMILES")
            try:
                return from_smiles(item)
            except ValueError as err:
                raise ValueError(smiles_error(item)) from err
        if isinstance(item, Data):
            return base.check_graph(item, node_in, edge_in, what)
        if base.is_networkx(item):
            graph = from_networkx_graph(item, node_in, edge_in)
            return base.check_graph(graph, node_in, edge_in, what)
        kinds = "a networkx graph or a PyG Data"
        raise ValueError(f"expected {'a SMILES string, ' if self.task == 'molecules' else ''}"
                         f"{kinds}, got {type(item).__name__}")

    def check_inputs(self, inputs: Any) -> list:
        """The inputs as a list; InputError for SMILES given to a TU run (its inputs are
        graphs)."""
        inputs = super().check_inputs(inputs)
        if self.task == "tu":
            text = next((x for x in inputs if isinstance(x, str)), None)
            if text is not None:
                raise InputError(f"this run classifies graphs of the TU set "
                                 f"{self.config.get('tu_name', '')} (networkx graphs or PyG "
                                 f"Data from Python), not SMILES such as {text!r}: predict "
                                 "molecules with a run of 'structrnn train molecules'")
        return inputs

    def read_input(self, item: Any, options: dict[str, Any]) -> tuple[Data, Tensor | None]:
        """One input's graph and, when the run uses them, its raw RDKit descriptors (1, D).

        An input is a SMILES string (a molecule run), a networkx graph or a PyG ``Data`` (a
        ``Data`` from :func:`structrnn.datasets.molecules.from_smiles`, or built like the run's
        TU set; a networkx graph with node ``x`` or ``label`` and edge ``edge_attr`` or
        ``label``, and ``graph["smiles"]`` when the run uses RDKit descriptors)."""
        graph = self._graph(item)
        if not self.model_args.get("global_in"):
            return graph, None
        smiles = getattr(graph, "smiles", None)
        if not smiles:
            raise ValueError("the RDKit descriptors this run uses need the molecule's SMILES "
                             "(Data.smiles, or graph['smiles'] of a networkx graph)")
        from structrnn.datasets.molecules.descriptors import rdkit_descriptors

        return graph, rdkit_descriptors([smiles])[0]

    # -- predicting -------------------------------------------------------------------------------
    def forward_batch(self, inputs: list[tuple[Data, Tensor | None]],
                      options: dict[str, Any]) -> Tensor:
        """(B, M, T) every member's output for the read inputs: targets in real units, or class
        probabilities (T = classes)."""
        batch = Batch.from_data_list([graph for graph, _ in inputs]).to(self.device)
        # (B, D) the RDKit descriptors, or None
        raw = torch.cat([r for _, r in inputs]) if inputs[0][1] is not None else None
        outs = []
        for model, member, (mean, std) in zip(self.models, self.members, self._scales,
                                              strict=True):
            if raw is not None:
                from structrnn.datasets.molecules.descriptors import cdf_normalise

                # each member maps them through its own training molecules' distribution
                batch.u = cdf_normalise(raw, member.reference).to(self.device)
            out = model(batch).float()
            if self.kind == "classification":
                out = torch.cat([torch.softmax(block, 1) for block in
                                 out.split(self.classes, dim=1)], 1)
            outs.append(out if self.kind == "classification" else out * std + mean)
        return torch.stack(outs, 1).cpu()

    def make_row(self, item: Any, index: int, out: Tensor | None,
                 options: dict[str, Any]) -> dict:
        """The dict of one input; ``out`` (M, T) its members' outputs, None after an error.

        ``{"input": the SMILES or the input's index, "<target>": float in the data's units,
        "<target>_std": the ensemble's spread (several models only), "<target>_low" and
        "<target>_high": the conformal interval (runs trained with ``--conformal``), "error"}``
        per regression input; ``{"input", "label": int, "probs": [C floats summing to 1],
        "error"}`` per graph of a TU run; for a molecule classification per binary task
        ``"<task>"``: the probability of class 1 (``"<task>_std"`` its spread), per multi-class task
        ``"<task>"``: the class and ``"<task>_p<k>"``: the probabilities."""
        row: dict[str, Any] = {"input": item if isinstance(item, str) else index}
        ensemble = len(self.models) > 1
        if self.kind == "classification" and self.task == "tu":
            probs = None if out is None else out.mean(0)
            row["label"] = None if probs is None else int(probs.argmax())
            row["probs"] = None if probs is None else probs.tolist()
        elif self.kind == "classification":
            self._class_columns(row, out)
        else:
            for t, name in enumerate(self.target_names):
                row[name] = None if out is None else float(out[:, t].mean())
                std = None if out is None else float(out[:, t].std(unbiased=False))
                if ensemble:
                    row[f"{name}_std"] = std
                if self.calibration is not None:  # --conformal: "<name>_low", "<name>_high"
                    row.update(interval_columns(name, row[name], std, self.calibration))
        row["error"] = None
        return row

    def _class_columns(self, row: dict, out: Tensor | None) -> None:
        """A molecule classification's keys of one input: per binary task the probability of
        class 1 (and its spread over an ensemble), per multi-class task the class and each
        class's probability; ``out`` (M, sum(classes)) the members' probabilities."""
        start = 0
        for name, c in zip(self.target_names, self.classes, strict=True):
            block = None if out is None else out[:, start:start + c]
            start += c
            if c == 2:
                row[name] = None if block is None else float(block[:, 1].mean())
                if len(self.models) > 1:
                    row[f"{name}_std"] = (None if block is None
                                          else float(block[:, 1].std(unbiased=False)))
                continue
            probs = None if block is None else block.mean(0)
            row[name] = None if probs is None else int(probs.argmax())
            for k in range(c):
                row[f"{name}_p{k}"] = None if probs is None else float(probs[k])

    # -- files ------------------------------------------------------------------------------------
    def output_columns(self, header: Sequence[str]) -> list[str]:
        """The columns added to a CSV: ``<target>`` (and ``<target>_std`` for an ensemble) per
        target, then ``error``; a name the CSV already has gets ``_pred`` appended (predicting
        on a CSV that holds the measured values keeps them)."""
        keys = [k for k in self.make_row("", 0, None, {}) if k != "input"]
        taken, out = set(header), []
        for key in keys:
            name = key
            while name in taken:
                name += "_pred"
            taken.add(name)
            out.append(name)
        return out

    def predict_file(self, source: str | Path, destination: str | Path | None, *,
                     smiles_col: str | None = None, batch_size: int = 256,
                     progress: bool | None = None, **options: Any) -> int:
        """Predict every row of the CSV ``source`` into the CSV ``destination`` (stdout when
        None, else written atomically): every row in order with all its columns, plus
        ``<target>``, ``<target>_std`` (ensembles) and ``error``. A row whose SMILES is invalid
        or empty keeps empty prediction cells and the reason in ``error``.

        Args:
            smiles_col: the SMILES column (default: the run's ``--smiles-col``, else
                ``smiles``).

        Returns:
            The number of rows.

        Raises:
            InputError: a TU run (its graphs come from Python), no such file, no header, or no
                column ``smiles_col``.
        """
        if self.task == "tu":
            raise InputError("predict --input: a TU run classifies graphs, which come from "
                             "Python: structrnn.load(RUN).predict([networkx graphs or PyG Data])")
        if options:
            raise InputError(f"predict: {', '.join(sorted(options))} does not apply to a "
                             f"{self.task} run")
        column = smiles_col or self.config.get("smiles_col") or "smiles"
        header, rows = read_csv(source)
        if column not in header:
            raise InputError(f"{source}: no column {column!r} in the header {header} (choose "
                             "it with --smiles-col)")
        j = header.index(column)
        smiles = [row[j] if j < len(row) else "" for row in rows]
        results = self.predict(smiles, batch_size=batch_size, progress=progress)
        keys = [k for k in self.make_row("", 0, None, {}) if k != "input"]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([*header, *self.output_columns(header)])
        for row, result in zip(rows, results, strict=True):
            cells = ["" if result[k] is None else result[k] for k in keys]
            # a short row is padded, so the added columns stay under their headers
            writer.writerow([*row, *[""] * (len(header) - len(row)), *cells])
        write_output(destination, text.getvalue())
        return len(rows)

    # -- evaluating -------------------------------------------------------------------------------
    def task_args(self, data: str | None = None) -> argparse.Namespace:
        """The run's training arguments (config.json over the task's defaults); ``data``
        replaces the data root (or the CSV of ``--dataset csv``)."""
        from structrnn.tasks.molecules import task as molecule_task

        args = molecule_task.add_arguments(argparse.ArgumentParser()).parse_args([])
        for key, value in self.config.items():
            setattr(args, key, value)
        # TU runs, and runs older than the flag, trained without descriptors (its default is
        # settled per data set at training time, so None here means the config lacks it)
        args.global_features = self.config.get("global_features") or "none"
        args.no_progress = True
        if data is not None:
            if args.dataset == "csv" and Path(data).is_file():
                args.csv = data
            else:
                args.data = data
        return args

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """The run's figures on ``split`` (``test``, ``val``/``dev``, ``train``): its data set and
        every unit's split re-created from the config, each unit's model evaluated as the run
        did. Returns ``{"<split>_rmse"|"_mae"|"_r2": {target: {"mean", "std"}}}`` (regression),
        ``{"<split>_accuracy"|"_roc_auc"|"_pr_auc": {target: {"mean", "std"}}}`` and their
        averages over the tasks ``"<split>_mean_accuracy"`` ... (a molecule classification), or
        ``{"<split>_accuracy"|"_roc_auc": {"mean", "std"}}`` (a TU run), the mean and standard
        deviation over the units (what metrics.json reports for the test split), and
        ``"units"``: each unit's figures."""
        from structrnn.tasks.molecules import task as molecule_task

        part = base.split_part(split)
        args = self.task_args(data)
        prep = molecule_task.prepare(args)
        units = molecule_task.units(args, prep)
        if [u["name"] for u in units] != [m.name for m in self.members]:
            raise InputError(f"the run's units {[m.name for m in self.members]} are not the "
                             f"ones its config makes {[u['name'] for u in units]}")
        per_unit = []
        for unit, model in zip(units, self.models, strict=True):
            with torch.random.fork_rng(devices=[]):  # building a Unit draws initial weights
                work = molecule_task.Unit(args, prep, unit, self.device)
            figures = work.evaluate(model, getattr(work, f"{part}_set"))
            per_unit.append(figures)
        return summarise(per_unit, [u["name"] for u in units], part, self.target_names,
                         self.kind, tu=self.task == "tu")


def summarise(per_unit: list[dict], names: list[str], part: str, targets: list[str],
              kind: str, tu: bool = False) -> dict:
    """The mean +- std over units of :meth:`structrnn.tasks.molecules.task.Unit.evaluate`'s
    figures, as metrics.json reports them (``tu``: a TU run's accuracy and ROC-AUC)."""
    from structrnn.tasks.molecules.task import _mean_std

    if tu:
        from structrnn.tasks.molecules.task import fold_figures

        # the test fold by its models' mean probabilities (metrics.json); the models' own
        # validation and training parts differ, so those are figures per model
        folds = (fold_figures(names, [f["pred"] for f in per_unit], [f["true"] for f in per_unit])
                 if part == "test" else [{k: f[f"mean_{k}"] for k in ("accuracy", "roc_auc")}
                                         for f in per_unit])
        out: dict[str, Any] = {f"{part}_{k}": _mean_std([f[k] for f in folds])
                               for k in ("accuracy", "roc_auc")}
        out["units"] = [{"unit": n, f"{part}_accuracy": f["mean_accuracy"]}
                        for n, f in zip(names, per_unit, strict=True)]
        return out
    keys = (("accuracy", "roc_auc", "pr_auc") if kind == "classification"
            else ("rmse", "mae", "r2"))
    out = {f"{part}_{k}": {t: _mean_std([f[k][t] for f in per_unit]) for t in targets}
           for k in keys}
    if kind == "classification":
        out.update({f"{part}_mean_{k}": _mean_std([f[f"mean_{k}"] for f in per_unit])
                    for k in keys})
    out["units"] = [{"unit": n, **{f"{part}_{k}": f[k] for k in keys}}
                    for n, f in zip(names, per_unit, strict=True)]
    return out


def read_csv(source: str | Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV (a byte-order mark ignored); InputError when the file
    is missing or empty."""
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{source}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(f"{source}: empty file (expected a CSV with a header)")
    return rows[0], rows[1:]


PREDICTOR = MoleculePredictor

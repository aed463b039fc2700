"""Models out of Python (issue 23, item 7): ``sr.export_model`` to ``torch.export`` and ONNX,
tree and DAG models with the level loop unrolled to a ``max_height`` (equal to the eager level
loop, on trees and DAGs of other sizes than the example, in torch.export and onnxruntime; a
deeper input an error), a molecule run's ONNX file against its predictor, and
``structrnn export RUN FILE --format onnx``."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.export import Dim

import structrnn as sr
from structrnn.export import Unrolled, check_height, export_model, unrolled
from structrnn.levels.unrolled import graph_height, run_unrolled

HAS_ONNX = all(__import__("importlib").util.find_spec(m) for m in
               ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript or onnxruntime is not "
                                "installed (pip install 'structrnn[export]')")
pytestmark = pytest.mark.filterwarnings("ignore")  # the ONNX exporter's own chatter


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ort_run(path, *inputs) -> list[torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), inputs, strict=True)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def random_forest(sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Trees of ``sizes`` nodes in one batch (child -> parent, each node's parent an earlier
    node of its tree), each node's slot among its parent's children (< 2: binary trees), and
    the batch's height."""
    g = torch.Generator().manual_seed(seed)
    edges, slots, start = [], [], 0
    for n in sizes:
        children: dict[int, int] = {}
        slots.append(0)
        for v in range(1, n):
            while True:  # a parent with a free slot
                p = int(torch.randint(0, v, (1,), generator=g))
                if children.get(p, 0) < 2:
                    break
            slots.append(children.get(p, 0))
            children[p] = children.get(p, 0) + 1
            edges.append((start + v, start + p))
        start += n
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    return edge_index, torch.tensor(slots), graph_height(edge_index, start)


def random_dag(n: int, seed: int, p: float = 0.3) -> torch.Tensor:
    """Edges u -> v with u < v, each present with probability ``p``."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.triu_indices(n, n, 1)
    keep = torch.rand(u.numel(), generator=g) < p
    return torch.stack([u[keep], v[keep]])


# ------------------------------------------------------------------ export_model
class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h), h.sum(1)


def test_export_model_torch_round_trip_with_dynamic_rows(tmp_path):
    module = Small().eval()
    path = export_model(module, (torch.randn(5, 4),), tmp_path / "small.pt2",
                        dynamic_shapes=({0: Dim("rows")},), check=True, metadata={"k": [1, 2]})
    assert path.suffix == ".pt2" and path.is_file()
    other = torch.randn(11, 4)
    out = torch.export.load(path).module()(other)
    torch.testing.assert_close(out, module(other))


@needs_onnx
def test_export_model_onnx_round_trip_in_onnxruntime(tmp_path):
    import onnx

    module = Small().eval()
    path = export_model(module, (torch.randn(5, 4),), tmp_path / "small.onnx", format="onnx",
                        dynamic_shapes=({0: Dim("rows")},), check=True, input_names=["x"],
                        output_names=["y", "s"], metadata={"what": "a test", "n": 3})
    other = torch.randn(9, 4)
    with torch.no_grad():
        expected = module(other)
    for got, want in zip(ort_run(path, other), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == {"what": "a test", "n": "3"}


def test_export_model_refuses_an_unknown_format(tmp_path):
    with pytest.raises(sr.InputError, match=r"format: expected one of 'torch', 'onnx', "
                                            r"got 'tflite'"):
        export_model(Small(), (torch.randn(2, 4),), tmp_path / "m", format="tflite")


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_onnx_without_the_export_extra_names_it(tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed
    with pytest.raises(sr.InputError, match=rf"needs {missing}.*structrnn\[export\]"):
        export_model(Small(), (torch.randn(2, 4),), tmp_path / "m.onnx", format="onnx")


def test_a_tree_model_needs_max_height(tmp_path):
    with pytest.raises(sr.InputError, match="max_height: required to export TreeLSTM"):
        export_model(sr.TreeLSTM(3, 4), (torch.randn(3, 3), torch.tensor([[1, 2], [0, 0]])),
                     tmp_path / "t.pt2")
    with pytest.raises(sr.InputError, match="max_height: only for tree and DAG models"):
        export_model(Small(), (torch.randn(2, 4),), tmp_path / "m.pt2", max_height=3)


# ------------------------------------------------------------------ the unrolled level loop
def tree_models():
    torch.manual_seed(0)
    return {
        "child-sum": (sr.TreeLSTM(5, 6), False),
        "n-ary": (sr.TreeLSTM(5, 6, variant="n-ary", arity=2), True),
        "tree-gru": (sr.TreeGRU(5, 6), False),
        "bi-tree-lstm": (sr.BiTreeLSTM(5, 6), False),
    }


def eager(model, x, edge_index, slots, nary):
    """The model's own level loop (its ``h``)."""
    with torch.no_grad():
        return model(x, edge_index, child_index=slots) if nary else model(x, edge_index)


@pytest.mark.parametrize("name", ["child-sum", "n-ary", "tree-gru", "bi-tree-lstm"])
def test_unrolled_trees_equal_the_level_loop(name):
    model, nary = tree_models()[name]
    model.eval()
    edge_index, slots, height = random_forest([1, 7, 15, 4], seed=1)
    x = torch.randn(slots.numel(), 5)
    want = eager(model, x, edge_index, slots, nary)
    for max_height in (height, height + 3):  # exact at the bound and beyond it
        with torch.no_grad():
            got = unrolled(model, max_height)(x, edge_index, slots if nary else None)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["child-sum", "bi-tree-lstm"])
def test_return_state_gives_the_memory_too(name):
    model = tree_models()[name][0].eval()
    edge_index, _, height = random_forest([9], seed=2)
    x = torch.randn(9, 5)
    with torch.no_grad():
        h, c = Unrolled(model, height, return_state=True)(x, edge_index)
        want_h, want_c = model(x, edge_index, return_state=True)
    torch.testing.assert_close((h, c), (want_h, want_c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unrolled_dags_equal_the_level_loop(direction, cell):
    torch.manual_seed(3)
    c = sr.LSTMCell(4, 5) if cell == "lstm" else sr.GRUCell(4, 5)
    model = sr.DAGRecurrent(c, direction=direction).eval()
    edge_index = torch.cat([random_dag(9, 4), random_dag(6, 5) + 9], 1)
    x = torch.randn(15, 4)
    height = max(graph_height(edge_index, 15), graph_height(edge_index.flip(0), 15))
    with torch.no_grad():
        want = model(x, edge_index, return_state=True)
        got = Unrolled(model, height, return_state=True)(x, edge_index)
        assert type(got) is type(want)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_deeper_tree_is_an_error_naming_both_heights():
    model = sr.TreeLSTM(3, 4).eval()
    chain = torch.tensor([[1, 2, 3, 4], [0, 1, 2, 3]])  # height 4
    with pytest.raises(sr.InputError, match=r"height 4, but the model was exported with "
                                            r"max_height=3"):
        unrolled(model, 3)(torch.randn(5, 3), chain)
    with pytest.raises(sr.InputError, match="max_height=3"):
        check_height(chain, 5, 3)
    check_height(chain, 5, 4)  # the bound itself is fine
    # a cycle has no height: refused, not run
    with pytest.raises(sr.InputError, match="has a cycle"):
        check_height(torch.tensor([[0, 1], [1, 0]]), 2, 5)


def test_too_deep_is_the_unrolled_passs_own_flag():
    cell = sr.GRUCell(3, 4)
    chain = torch.tensor([[1, 2, 3], [0, 1, 2]])
    _, deep = run_unrolled(cell, torch.randn(4, 3), chain, 2)
    _, fine = run_unrolled(cell, torch.randn(4, 3), chain, 3)
    assert bool(deep) and not bool(fine)


TREE_SHAPES = ({0: Dim("nodes", min=2)}, {1: Dim("edges", min=1)})
NARY_SHAPES = (*TREE_SHAPES, {0: Dim("nodes", min=2)})


@pytest.mark.parametrize("name", ["child-sum", "n-ary", "bi-tree-lstm"])
def test_tree_models_through_torch_export_on_other_trees(tmp_path, name):
    model, nary = tree_models()[name]
    model.eval()
    edge_index, slots, _ = random_forest([6, 5], seed=6)
    x = torch.randn(11, 5)
    example = (x, edge_index, slots) if nary else (x, edge_index)
    path = export_model(model, example, tmp_path / "tree.pt2",
                        dynamic_shapes=NARY_SHAPES if nary else TREE_SHAPES, max_height=8,
                        check=True)
    program = torch.export.load(path).module()
    edge_index, slots, height = random_forest([3, 20, 1, 9], seed=7)
    assert height <= 8
    x = torch.randn(slots.numel(), 5)
    got = program(x, edge_index, slots) if nary else program(x, edge_index)
    torch.testing.assert_close(got, eager(model, x, edge_index, slots, nary), rtol=1e-5,
                               atol=1e-6)
    # deeper than max_height: the program's own assertion, not a wrong answer
    chain = torch.stack([torch.arange(1, 12), torch.arange(0, 11)])
    with pytest.raises(RuntimeError, match="deeper than the max_height"):
        program(torch.randn(12, 5), chain, torch.zeros(12, dtype=torch.long)) if nary else \
            program(torch.randn(12, 5), chain)


@needs_onnx
@pytest.mark.parametrize("name", ["child-sum", "n-ary"])
def test_tree_lstm_in_onnxruntime_on_other_trees(tmp_path, name):
    model, nary = tree_models()[name]
    model.eval()
    edge_index, slots, _ = random_forest([6, 5], seed=8)
    x = torch.randn(11, 5)
    example = (x, edge_index, slots) if nary else (x, edge_index)
    path = export_model(model, example, tmp_path / "tree.onnx", format="onnx",
                        dynamic_shapes=NARY_SHAPES if nary else TREE_SHAPES, max_height=12,
                        check=True)
    for sizes, seed in (([3, 20, 1, 9], 9), ([40], 10)):
        edge_index, slots, height = random_forest(sizes, seed)
        x = torch.randn(slots.numel(), 5)
        check_height(edge_index, slots.numel(), 12)  # what a caller does before running it
        inputs = (x, edge_index, slots) if nary else (x, edge_index)
        (got,) = ort_run(path, *inputs)
        torch.testing.assert_close(got, eager(model, x, edge_index, slots, nary), rtol=1e-5,
                                   atol=1e-5)
    # ONNX has no assertion: a deeper tree gives NaN, never numbers
    chain = torch.stack([torch.arange(1, 16), torch.arange(0, 15)])  # height 15
    inputs = (torch.randn(16, 5), chain) + ((torch.zeros(16, dtype=torch.long),) if nary else ())
    (got,) = ort_run(path, *inputs)
    assert torch.isnan(got).all()


@needs_onnx
def test_dag_recurrent_in_onnxruntime_on_other_dags(tmp_path):
    torch.manual_seed(11)
    model = sr.DAGRecurrent(sr.LSTMCell(4, 5), direction="both").eval()
    edge_index = random_dag(8, 12)
    path = export_model(model, (torch.randn(8, 4), edge_index), tmp_path / "dag.onnx",
                        format="onnx", dynamic_shapes=TREE_SHAPES, max_height=12, check=True)
    edge_index = torch.cat([random_dag(13, 13), random_dag(5, 14) + 13], 1)
    x = torch.randn(18, 4)
    (got,) = ort_run(path, x, edge_index)
    with torch.no_grad():
        want = model(x, edge_index)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_attention_and_recursive_models_are_refused_by_name():
    with pytest.raises(sr.InputError, match="aggr='attention'"):
        Unrolled(sr.DAGRecurrent(sr.GRUCell(3, 4), aggr="attention"), 4)
    with pytest.raises(sr.InputError, match="got RecursiveNN"):
        Unrolled(sr.RecursiveNN(4), 4)


# ------------------------------------------------------------------ a molecule run
def test_dense_cdf_normalisation_equals_the_searchsorted_one():
    from structrnn.datasets.molecules.descriptors import cdf_normalise
    from structrnn.tasks.molecules.deployed import cdf_normalise_dense

    g = torch.Generator().manual_seed(0)
    reference = torch.randn(50, 6, generator=g, dtype=torch.float64)
    reference[3, 1] = float("nan")
    reference[:, 4] = float("nan")  # a column with no finite value
    reference[7, 2] = float("inf")
    values = torch.randn(9, 6, generator=g, dtype=torch.float64)
    values[0, 0], values[1, 2], values[2, 3] = float("nan"), float("inf"), reference[5, 3]
    finite = torch.isfinite(reference)
    ref = torch.where(finite, reference, torch.full_like(reference, float("inf")))
    torch.testing.assert_close(cdf_normalise_dense(values, ref, finite.sum(0)),
                               cdf_normalise(values, reference), rtol=0, atol=0)


# Each body of `structrnn train molecules --model`, with the readout it trains with by default
# on the built-in data (atom-sum; GIN's own sum over layers), and MPNN with set2set (PyG's
# Set2Set, an LSTM over the molecule's atoms, inside the file).
BODIES = {"gn-gru": [], "dmpnn": [], "mpnn": ["--readout", "set2set"], "gin": []}


@pytest.fixture(scope="module")
def molecule_runs(tmp_path_factory):
    """``molecule_runs(body)``: a tiny two-seed run of ``body`` on the built-in molecules
    (trained once per module)."""
    pytest.importorskip("rdkit")
    from structrnn.tasks.molecules import task
    from structrnn.training.task import train

    runs: dict = {}

    def run(body: str):
        if body not in runs:
            out = tmp_path_factory.mktemp(f"molecules-{body}") / "run"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("STRUCTRNN_CACHE", str(tmp_path_factory.mktemp("cache")))
                train(task.TASK, ["--max-molecules", "60", "--epochs", "2", "--hidden", "8",
                                  "--steps", "2", "--no-progress", "--model", body,
                                  *BODIES[body], "--seeds", "0,1", "--out", str(out)])
            runs[body] = out
        return runs[body]

    return run


@pytest.fixture
def molecule_run(molecule_runs):
    return molecule_runs("gn-gru")  # the default body


OTHER_MOLECULES = ["CCCCCCN", "O=C(O)c1ccccc1C(=O)O", "C", "CC", "N#N", "c1ccc2ccccc2c1",
                   "CC(C)(C)c1ccc(O)cc1"]


@needs_onnx
@pytest.mark.parametrize("body", list(BODIES))
def test_each_molecule_body_exports_to_onnx_and_predicts_what_the_predictor_does(
        molecule_runs, tmp_path, body):
    """The run's file in onnxruntime on molecules of other sizes than the export's examples
    (one atom, two, a diatomic, fused rings ...) equals the predictor (eager PyTorch)."""
    from structrnn.datasets.molecules import from_smiles
    from structrnn.tasks.molecules.deployed import graph_inputs

    predictor = sr.load(molecule_runs(body))
    assert predictor.config["model"] == body
    path = predictor.export(tmp_path / "mol.onnx", format="onnx", check=True)
    rows = predictor.predict(OTHER_MOLECULES)
    prediction, members = ort_run(path, *graph_inputs([from_smiles(s) for s in
                                                       OTHER_MOLECULES]))
    (name,) = predictor.target_names
    assert prediction.shape == (7, 1) and members.shape == (7, 2, 1)
    torch.testing.assert_close(prediction[:, 0], torch.tensor([r[name] for r in rows]),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(members[:, :, 0].std(1, unbiased=False),
                               torch.tensor([r[f"{name}_std"] for r in rows]),
                               rtol=1e-4, atol=1e-5)


@needs_onnx
def test_a_molecule_run_exports_to_torch_and_to_its_own_format(molecule_run, tmp_path):
    from structrnn.datasets.molecules import from_smiles
    from structrnn.tasks.molecules.deployed import graph_inputs

    predictor = sr.load(molecule_run)
    path = predictor.export(tmp_path / "mol.onnx", format="onnx")
    inputs = graph_inputs([from_smiles(s) for s in OTHER_MOLECULES[:3]])
    prediction, _ = ort_run(path, *inputs)
    # the torch.export program of the same run
    program = torch.export.load(predictor.export(tmp_path / "mol.pt2", format="torch"))
    got, _ = program.module()(*inputs)
    torch.testing.assert_close(got, prediction, rtol=1e-5, atol=1e-5)
    # the default format is still structrnn's own file
    again = sr.load(predictor.export(tmp_path / "mol.pt"))
    assert again.predict(OTHER_MOLECULES[:2]) == predictor.predict(OTHER_MOLECULES[:2])


@needs_onnx
def test_structrnn_export_format_onnx(molecule_run, tmp_path):
    import onnx

    from structrnn import cli

    path = tmp_path / "cli.onnx"
    assert cli.main(["export", str(molecule_run), str(path), "--format", "onnx"]) == 0
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["structrnn.inputs"] == '["x", "edge_index", "edge_attr", "batch", "ptr"]'
    assert props["structrnn.kind"] == "regression"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["export", str(molecule_run), str(path), "--format", "x"])


@needs_onnx
def test_molecule_descriptors_enter_the_onnx_file_raw(tmp_path):
    """A run with RDKit descriptors: the file takes them raw and normalises them through each
    member's own reference, as the predictor does in Python."""
    pytest.importorskip("rdkit")
    from structrnn.datasets.molecules import from_smiles
    from structrnn.datasets.molecules.descriptors import cdf_normalise, rdkit_descriptors
    from structrnn.tasks.molecules.deployed import DeployedMolecules, graph_inputs
    from structrnn.tasks.molecules.model import MoleculeModel

    torch.manual_seed(0)
    train = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "OCCO", "c1ccncc1", "CC#N"]
    reference = rdkit_descriptors(train)[0]
    graphs = [from_smiles(s) for s in OTHER_MOLECULES]
    raw = rdkit_descriptors(OTHER_MOLECULES)[0]
    d = raw.size(1)
    models = [MoleculeModel(graphs[0].x.size(1), graphs[0].edge_attr.size(1), 2, hidden=8,
                            steps=2, model="gn-gru", readout="set2set", global_in=d).eval()
              for _ in range(2)]
    means, stds = [torch.tensor([1.0, -2.0])] * 2, [torch.tensor([3.0, 0.5])] * 2
    refs = [reference, reference[:5]]
    module = DeployedMolecules(models, "regression", means, stds, refs).eval()
    example = graph_inputs(graphs[:3], raw[:3])
    shapes = ({0: Dim("a", min=2)}, {1: Dim("b", min=2)}, {0: Dim("b", min=2)},
              {0: Dim("a", min=2)}, {0: Dim("g") + 1}, {0: Dim("g")})
    path = export_model(module, example, tmp_path / "d.onnx", format="onnx",
                        dynamic_shapes=shapes, check=True)
    prediction, _ = ort_run(path, *graph_inputs(graphs, raw))
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(graphs)
    want = []
    with torch.no_grad():
        for model, ref, mean, std in zip(models, refs, means, stds, strict=True):
            batch.u = cdf_normalise(raw, ref)
            want.append(model(batch) * std + mean)
    torch.testing.assert_close(prediction, torch.stack(want).mean(0), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ a tree sentiment run
@pytest.fixture(scope="module")
def sentiment_runs(tmp_path_factory):
    """``sentiment_runs(model)``: a tiny run of ``structrnn train sst --model MODEL`` on the
    synthetic treebank (trained once per module)."""
    from structrnn.tasks.sentiment import task
    from structrnn.training.task import train

    runs: dict = {}

    def run(model: str):
        if model not in runs:
            out = tmp_path_factory.mktemp(f"sentiment-{model}") / "run"
            train(task.TASK, ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden",
                              "8", "--embed-dim", "8", "--epochs", "1", "--no-progress",
                              "--model", model, "--out", str(out)])
            runs[model] = out
        return runs[model]

    return run


OTHER_SENTENCES = ["good", "a thoroughly bad , boring film .", "not really good at all",
                   "(4 (2 (2 The) (2 cast)) (4 (3 is) (4 (4 (4 wonderful) (2 and)) (3 warm))))"]


def sentiment_trees(sentences):
    from structrnn.trees.tokenize import balanced_tree, tokenize

    return [sr.Tree.from_ptb(s) if s.startswith("(") else balanced_tree(tokenize(s))
            for s in sentences]


@needs_onnx
@pytest.mark.parametrize("model", ["tree-lstm", "child-sum-tree-lstm", "bi-tree-lstm"])
def test_a_sentiment_runs_file_equals_the_level_loop_on_other_trees(sentiment_runs, tmp_path,
                                                                    model):
    from structrnn.tasks.sentiment.deployed import check_trees, tree_inputs
    from structrnn.trees.loader import collate_trees

    predictor = sr.load(sentiment_runs(model))
    path = predictor.export(tmp_path / "s.onnx", format="onnx", max_height=8, check=True)
    trees = sentiment_trees(OTHER_SENTENCES)
    check_trees(trees, predictor.vocab, 8)  # what a caller does before onnxruntime
    logits, probs = ort_run(path, *tree_inputs(trees, predictor.vocab))
    with torch.no_grad():  # the model's own level loop, as predict runs it
        want = predictor.model(collate_trees([t.to_data(predictor.vocab) for t in trees]))
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs, want.softmax(-1), rtol=1e-5, atol=1e-5)
    # the torch.export program of the same run, and a tree deeper than max_height
    program = torch.export.load(predictor.export(tmp_path / "s.pt2", format="torch",
                                                 max_height=8)).module()
    got, _ = program(*tree_inputs(trees, predictor.vocab))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    deep = [sr.Tree.from_ptb("(2 (2 a) " * 10 + "(2 b)" + ")" * 10)]  # height 10
    with pytest.raises(sr.InputError, match=r"has height 10, but the model was exported with "
                                            r"max_height=8"):
        check_trees(deep, predictor.vocab, 8)
    with pytest.raises(RuntimeError, match="deeper than the max_height"):
        program(*tree_inputs(deep, predictor.vocab))


def test_sentiment_export_options_and_refusals(sentiment_runs, tmp_path):
    from structrnn import cli
    from structrnn.tasks.sentiment.deployed import DeployedSentiment
    from structrnn.tasks.sentiment.model import TreeSentiment

    run = sentiment_runs("tree-lstm")
    path = tmp_path / "s.pt2"
    assert cli.main(["export", str(run), str(path), "--format", "torch", "--max-height",
                     "5"]) == 0
    program = torch.export.load(path).module()
    chain = torch.stack([torch.arange(1, 7), torch.arange(0, 6)])  # height 6
    with pytest.raises(RuntimeError, match="deeper than the max_height"):
        program(torch.zeros(7, dtype=torch.long), chain, torch.zeros(7, dtype=torch.long))
    with pytest.raises(sr.InputError, match="unknown option"):
        sr.load(run).export(tmp_path / "x.onnx", format="onnx", depth=3)
    with pytest.raises(sr.InputError, match="'rntn' sentiment run has no torch.export"):
        DeployedSentiment(TreeSentiment(20, model="rntn", embed_dim=4, hidden=4), 8)


@needs_onnx
def test_the_export_benchmark_runs_at_its_smallest_settings(tmp_path, monkeypatch, capsys):
    pytest.importorskip("rdkit")
    from structrnn.benchmarks import export as bench

    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))
    figures = bench.main(["--molecules", "4", "--rounds", "1", "--train-molecules", "40",
                          "--epochs", "1", "--hidden", "8", "--steps", "1"])
    out = capsys.readouterr().out
    assert "command: structrnn bench export" in out and "machine before:" in out
    assert figures["model"] == "gn-gru" and figures["onnx_bytes"] > 0
    assert figures["max_abs_diff"] < 1e-3 and figures["eager_over_onnx"] > 0

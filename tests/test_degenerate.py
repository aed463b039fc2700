"""Degenerate inputs: each either works (checked against an independent reference) or raises a
ValueError that names what is wrong."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from structrnn.cells import NaryLSTMCell
from structrnn.graphs.models import MPNN, InteractionNetwork, mlp
from structrnn.graphs.network import GraphNetwork
from structrnn.levels.schedule import tree_schedule
from structrnn.tasks.sentiment.model import TreeSentiment, evaluate
from structrnn.trees.loader import TreeLoader, collate_trees
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
from structrnn.trees.ptb import ParseError
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

DT = torch.float64
EMPTY_EDGES = torch.zeros(2, 0, dtype=torch.long)


def tree_models(width: int = 4, hidden: int = 3) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "child-sum": TreeLSTM(width, hidden), "n-ary": TreeLSTM(width, hidden, "n-ary"),
        "gru": TreeGRU(width, hidden), "recursive": RecursiveNN(width), "rntn": RNTN(width),
        "bi": BiTreeLSTM(width, hidden),
    }


def call(model: nn.Module, x, edge_index, pos=None):
    if isinstance(model, TreeLSTM) and model.variant == "n-ary":
        return model(x, edge_index, child_index=torch.zeros(x.size(0), dtype=torch.long)
                     if pos is None else pos)
    return model(x, edge_index)


# -- trees ----------------------------------------------------------------------------------------
def test_one_node_tree_data_and_every_model():
    tree = Tree.from_ptb("(3 good)")
    data = tree.to_data(Vocab(["good"]))
    assert data.x.tolist() == [1] and data.y.tolist() == [3]
    assert data.edge_index.shape == (2, 0) and data.height.tolist() == [0]
    x = torch.randn(1, 4)
    for name, model in tree_models().items():
        out = call(model, x, data.edge_index)
        assert out.shape[0] == 1 and torch.isfinite(out).all(), name
    # a lone node is one LSTM / GRU step from a zero state: torch.nn's cells with the weights
    for ours, ref_class in ((tree_models()["child-sum"], nn.LSTMCell),
                            (tree_models()["gru"], nn.GRUCell)):
        ref = ref_class(4, 3)
        ref.load_state_dict(ours.cell.state_dict())
        expected = ref(x)[0] if ref_class is nn.LSTMCell else ref(x)
        torch.testing.assert_close(ours(x, EMPTY_EDGES), expected)


def test_batch_of_one_node_trees_through_both_loaders_and_the_sentiment_model():
    vocab = Vocab(["a", "b"])
    trees = [Tree.from_ptb(t).to_data(vocab) for t in ("(1 a)", "(2 zzz)", "(4 b)")]
    model = TreeSentiment(len(vocab), 5, "tree-lstm", embed_dim=6, hidden=4, dropout=0.0).eval()
    with torch.no_grad():
        alone = torch.cat([model(collate_trees([d])) for d in trees])
        for loader in (TreeLoader(trees, batch_size=3), DataLoader(trees, batch_size=3)):
            (batch,) = list(loader)
            torch.testing.assert_close(model(batch), alone)


def test_leaves_without_tokens():
    tree = Tree.from_ptb("(2 (1) (3 (4) (0)))")
    assert tree.leaves() == [] and len(tree.leaf_nodes()) == 3
    vocab = Vocab.build([tree])
    assert len(vocab) == 1  # only <unk>
    data = tree.to_data(vocab)
    assert data.x.tolist() == [-1] * 5 and data.y.tolist() == [2, 1, 3, 4, 0]
    model = TreeSentiment(len(vocab), 5, "tree-lstm", embed_dim=6, hidden=4, dropout=0.0).eval()
    batch = collate_trees([data, Tree.from_ptb("(2)").to_data(vocab)])
    with torch.no_grad():
        logits = model(batch)
        # no token means a zero input: the same as the encoder on zeros
        h = model.encoder(torch.zeros(6, 6), batch.edge_index, child_index=batch.child_index)
    assert logits.shape == (6, 5) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.classifier(h))


def test_empty_list_and_empty_batch():
    assert list(TreeLoader([], batch_size=4)) == []
    assert list(DataLoader([], batch_size=4)) == []
    with pytest.raises(ValueError, match="data_list.*empty"):
        collate_trees([])
    model = TreeSentiment(3, 5, "tree-lstm", embed_dim=4, hidden=3)
    result = evaluate(model, TreeLoader([], batch_size=4), torch.device("cpu"))
    assert result["root_acc"] == 0.0 and result["root_true"].numel() == 0
    schedule = tree_schedule(EMPTY_EDGES, 0)
    assert schedule.up.num_levels == 0 and schedule.down.num_levels == 0


@pytest.mark.parametrize("name", list(tree_models()))
def test_models_on_zero_nodes_return_zero_rows(name):
    model = tree_models()[name]
    out = call(model, torch.zeros(0, 4), EMPTY_EDGES)
    out = out[0] if isinstance(out, tuple) else out
    width = {"recursive": 4, "rntn": 4, "bi": 6}.get(name, 3)
    assert out.shape == (0, width)


def test_tree_model_errors_name_the_argument():
    model = TreeLSTM(4, 3)
    edges = torch.tensor([[1, 2], [0, 0]])
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\), got \(3, 5\)"):
        model(torch.zeros(3, 5), edges)
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, \*\), got \(3, 2\)"):
        model(torch.zeros(3, 4), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="child_index is required"):
        TreeLSTM(4, 3, "n-ary")(torch.zeros(3, 4), edges)
    with pytest.raises(ValueError, match="cycle"):
        model(torch.zeros(3, 4), torch.tensor([[1, 2, 0], [0, 1, 2]]))
    with pytest.raises(ValueError, match="more than one parent"):
        model(torch.zeros(3, 4), torch.tensor([[2, 2], [0, 1]]))
    with pytest.raises(ValueError, match="must have shape"):
        model(torch.zeros(3, 4), edges, height=torch.zeros(2, dtype=torch.long))


def test_more_children_than_the_arity_is_refused():
    """A node with 3 children under a binary N-ary cell would otherwise spill its third child
    into the next parent's slot, silently."""
    # parent 0 has 3 children (1, 2, 3), parent 4 has 2 (5, 6): one level, two parents
    edges = torch.tensor([[1, 2, 3, 5, 6], [0, 0, 0, 4, 4]])
    pos = torch.tensor([0, 0, 1, 2, 0, 0, 1])
    for model in (TreeLSTM(4, 3, "n-ary", arity=2), RecursiveNN(4, arity=2)):
        with pytest.raises(ValueError, match="arity"):
            model(torch.randn(7, 4), edges, child_index=pos)
    with pytest.raises(ValueError, match="child_index"):  # the cell called directly checks too
        NaryLSTMCell(4, 3, arity=2)(torch.zeros(1, 4), (torch.zeros(3, 3), torch.zeros(3, 3)),
                                    index=torch.zeros(3, dtype=torch.long), size=1,
                                    child_index=torch.tensor([0, 1, 2]))
    # binarized, the same tree runs
    tree = Tree.from_ptb("(1 (2 a) (2 b) (2 c))").binarize()
    data = tree.to_data(Vocab(["a", "b", "c"]))
    out = TreeLSTM(4, 3, "n-ary")(torch.randn(data.num_nodes, 4), data.edge_index,
                                  child_index=data.child_index)
    assert out.shape == (5, 3)


def test_tree_text_errors():
    for text, reason in (("", "empty input"), ("   \n", "empty input"),
                         ("(2 a", "never closed"), ("(2 a))", "no matching"),
                         ("()", "needs a label"), ("(2 a) (3 b)", "second tree"),
                         ("(2 a (3 b))", "token")):
        with pytest.raises(ParseError, match=reason):
            Tree.from_ptb(text)
    with pytest.raises(ValueError, match="label"):
        Tree("two words")
    with pytest.raises(ValueError, match="token"):
        Tree("2", [Tree("1", token="a")], token="b")


# -- vocabularies ---------------------------------------------------------------------------------
def test_unknown_words():
    vocab = Vocab(["good", "Bad"])
    assert vocab["good"] == 1 and vocab["never-seen"] == 0 == vocab.unk_id
    assert "never-seen" not in vocab and vocab.get("never-seen") is None
    data = Tree.from_ptb("(2 (2 good) (2 never-seen))").to_data(vocab)
    assert data.x.tolist() == [-1, 1, 0]
    lower = Vocab(["good", "Bad"], lower=True)
    assert lower["BAD"] == lower["bad"] == 2
    strict = Vocab(["good"], unk=None)
    with pytest.raises(KeyError):
        strict["never-seen"]
    with pytest.raises(ValueError, match="'never-seen' is not in the vocabulary"):
        Tree.from_ptb("(2 (2 good) (2 never-seen))").to_data(strict)
    with pytest.raises(ValueError, match="'never-seen' is not in the vocabulary"):
        Tree.from_ptb("(2 never-seen)").to_data({"good": 0})
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 3\), got 7"):
        vocab.lookup_tokens([1, 7])
    with pytest.raises(ValueError, match="sources\\[0\\].*string"):
        Vocab.build(["not a list of tokens"])
    with pytest.raises(ValueError, match="'good' occurs twice"):
        Vocab(["good", "good"])


# -- graphs ---------------------------------------------------------------------------------------
def test_graph_with_no_edges_matches_the_node_model_on_zero_messages():
    torch.manual_seed(0)
    edge_model, node_model = mlp([3 * 2, 4]), mlp([2 + 4, 5])
    net = InteractionNetwork(edge_model, node_model).to(DT)
    x = torch.randn(6, 2, dtype=DT)
    new_x, new_e, u = net(x, EMPTY_EDGES, torch.zeros(0, 2, dtype=DT))
    assert new_e.shape == (0, 4) and u is None
    torch.testing.assert_close(new_x, node_model(torch.cat([x, torch.zeros(6, 4, dtype=DT)], 1)))
    # a full block with a global model: the edge aggregate of an edgeless graph is zero
    gn = GraphNetwork(mlp([2 + 2 + 2 + 1, 3]), mlp([2 + 3 + 1, 2]), mlp([1 + 2 + 3, 1]),
                      global_aggr="sum").to(DT)
    u0 = torch.randn(1, 1, dtype=DT)
    gx, ge, gu = gn(x, EMPTY_EDGES, torch.zeros(0, 2, dtype=DT), u0)
    expect_x = gn.node_model(torch.cat([x, torch.zeros(6, 3, dtype=DT), u0.expand(6, 1)], 1))
    torch.testing.assert_close(gx, expect_x)
    expect_u = gn.global_model(torch.cat([u0, expect_x.sum(0, keepdim=True),
                                          torch.zeros(1, 3, dtype=DT)], 1))
    torch.testing.assert_close(gu, expect_u)
    assert ge.shape == (0, 3)


def test_graph_with_no_nodes():
    net = GraphNetwork(mlp([3 * 2, 4]), mlp([2 + 4, 5]), edge_inputs=("edge", "sender",
                                                                      "receiver"),
                       node_inputs=("node", "edges"))
    x, e, u = net(torch.zeros(0, 2), EMPTY_EDGES, torch.zeros(0, 2))
    assert x.shape == (0, 5) and e.shape == (0, 4) and u is None


def test_graph_errors_name_the_argument():
    net = GraphNetwork(mlp([3 * 2, 4]), mlp([2 + 4, 5]), edge_inputs=("edge", "sender",
                                                                      "receiver"),
                       node_inputs=("node", "edges"))
    x = torch.zeros(3, 2)
    edges = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, \*\)"):
        net(x, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"edge_attr must have shape \(2, \*\), got \(3, 2\)"):
        net(x, edges, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"expects 6 input features.*has 7"):
        net(x, edges, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="edge_aggr"):
        GraphNetwork(edge_aggr="median")


# -- molecules ------------------------------------------------------------------------------------
def _molecules():
    pytest.importorskip("rdkit")
    from structrnn.datasets import molecules

    return molecules


def _column(molecules, kind: str, group: str, value) -> int:
    groups = molecules.ATOM_FEATURE_GROUPS if kind == "atom" else molecules.BOND_FEATURE_GROUPS
    start = 0
    for name, vocab in groups:
        if name == group:
            return start + list(vocab).index(value)
        start += len(vocab) + 1
    raise KeyError(group)


def test_molecule_of_one_atom():
    molecules = _molecules()
    data = molecules.from_smiles("C")
    assert data.x.shape == (1, molecules.NUM_ATOM_FEATURES)
    assert data.edge_index.shape == (2, 0)
    assert data.edge_attr.shape == (0, molecules.NUM_BOND_FEATURES)
    row = data.x[0]
    assert row[_column(molecules, "atom", "element", "C")] == 1
    assert row[_column(molecules, "atom", "total_hs", 4)] == 1
    with_h = molecules.from_smiles("C", explicit_hydrogens=True)
    assert with_h.x.shape[0] == 5 and with_h.edge_index.shape == (2, 8)
    torch.manual_seed(0)
    for readout in ("set2set", "sum"):
        model = MPNN(molecules.NUM_ATOM_FEATURES, molecules.NUM_BOND_FEATURES, hidden=8,
                     steps=2, readout=readout, edge_hidden=8)
        batch = Batch.from_data_list([data, molecules.from_smiles("[Na+]")])
        out = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
        assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_salts_charges_and_stereo():
    molecules = _molecules()
    from rdkit import Chem

    salt = molecules.from_smiles("CC(=O)[O-].[Na+]")
    assert salt.x.shape[0] == Chem.MolFromSmiles("CC(=O)[O-].[Na+]").GetNumAtoms() == 5
    assert salt.edge_index.shape == (2, 6)  # the ion is an isolated node: no bond to it
    charge = salt.x[:, _column(molecules, "atom", "formal_charge", -1)]
    assert charge.tolist() == [0, 0, 0, 1, 0]
    assert salt.x[4, _column(molecules, "atom", "formal_charge", 1)] == 1
    assert salt.x[4, _column(molecules, "atom", "element", "Na")] == 1
    ammonium = molecules.from_smiles("[NH4+]")
    assert ammonium.x[0, _column(molecules, "atom", "total_hs", 4)] == 1

    chiral = molecules.from_smiles("C[C@H](N)C(=O)O")
    ccw = _column(molecules, "atom", "chirality", "CHI_TETRAHEDRAL_CCW")
    assert chiral.x[:, ccw].tolist() == [0, 1, 0, 0, 0, 0]
    mirror = molecules.from_smiles("C[C@@H](N)C(=O)O")
    assert mirror.x[1, _column(molecules, "atom", "chirality", "CHI_TETRAHEDRAL_CW")] == 1

    def double_bond_stereo(smiles):
        data = molecules.from_smiles(smiles)
        double = data.edge_attr[:, _column(molecules, "bond", "type", "DOUBLE")] == 1
        row = data.edge_attr[double][0]
        return [s for s in ("STEREOE", "STEREOZ", "STEREONONE")
                if row[_column(molecules, "bond", "stereo", s)] == 1]

    assert double_bond_stereo("F/C=C/F") == ["STEREOE"]
    assert double_bond_stereo("F/C=C\\F") == ["STEREOZ"]
    assert double_bond_stereo("FC=CF") == ["STEREONONE"]


@pytest.mark.parametrize("smiles, reason", [("C1CC", "could not parse"), ("", "no atoms"),
                                            ("[Xx]", "could not parse"), ("   ", "no atoms")])
def test_bad_smiles_are_quoted(smiles, reason):
    molecules = _molecules()
    with pytest.raises(ValueError, match=re.escape(f"invalid SMILES {smiles!r}: ") + f".*{reason}"):
        molecules.from_smiles(smiles)
    with pytest.raises(ValueError, match="smiles: expected a string"):
        molecules.from_smiles(None)


def test_graph_batch_of_one_atom_molecules_and_empty_edge_attr_loads():
    molecules = _molecules()
    graphs = [molecules.from_smiles(s) for s in ("C", "O", "[Na+].[Cl-]")]
    (batch,) = list(DataLoader(graphs, batch_size=3))
    assert batch.num_graphs == 3 and batch.edge_index.shape == (2, 0)
    assert batch.x.shape == (4, molecules.NUM_ATOM_FEATURES)
    assert isinstance(batch, Data)

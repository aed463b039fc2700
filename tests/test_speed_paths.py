"""The fast paths of issue 18 compute what the plain formulation computes (float64):

* a tree model fed the inputs of the nodes that have one (``x_rows``) equals the dense input
  with zero rows elsewhere, fused and op by op;
* TreeSentiment's CPU path (only the words are embedded, dropped out and projected) equals the
  old formulation, ``embedding(x) * has_token`` through the op-by-op Tree-LSTM;
* the N-ary kernel's gather plan (every inner node has all its slots: a binarised treebank) and
  its general scatter give the op-by-op states and gradients;
* the forget rows of ``weight_ih`` are never read when the inputs sit on the leaves (they are
  dead weights there, which weight decay drives into subnormal floats).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import structrnn as sr
from structrnn.levels.kernels.nary import _plan, nary_lstm
from structrnn.levels.run import run_schedule, run_up
from structrnn.tasks.sentiment.model import TreeSentiment
from structrnn.trees.loader import collate_trees
from tests.test_tree_kernels import forest

DT = torch.float64


def random_binary_ptb(leaves: int, gen: torch.Generator, words: int = 30) -> str:
    """A random bracketing of ``leaves`` words, labels 0-4 on every node (like SST)."""
    label = int(torch.randint(0, 5, (1,), generator=gen))
    if leaves == 1:
        return f"({label} w{int(torch.randint(0, words, (1,), generator=gen))})"
    left = int(torch.randint(1, leaves, (1,), generator=gen))
    return (f"({label} {random_binary_ptb(left, gen, words)} "
            f"{random_binary_ptb(leaves - left, gen, words)})")


def sentiment_batch(sizes=(1, 2, 5, 9, 17), seed=0, unknown=True):
    gen = torch.Generator().manual_seed(seed)
    trees = [sr.Tree.from_ptb(random_binary_ptb(n, gen)) for n in sizes]
    vocab = sr.Vocab.build(trees[1:] if unknown else trees)  # the first tree's words: <unk>
    return collate_trees([t.to_data(vocab) for t in trees]), len(vocab)


def grads_of(out: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads, strict=True)]


def assert_all_close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# -- x_rows: the inputs of some nodes only ------------------------------------------------------
@pytest.mark.parametrize("variant", ["child-sum", "n-ary"])
@pytest.mark.parametrize("where", ["leaves", "some-inner", "none"])
@pytest.mark.parametrize("fused", [True, False])
def test_x_rows_equals_the_dense_input(variant, where, fused):
    batch = forest([1, 2, 9, 30, 17], seed=4, max_children=2)
    n = batch.num_nodes
    s = sr.tree_schedule(batch.edge_index, n)
    leaves = s.up.order[:s.up.node_ptr[1]]
    rows = {"leaves": leaves.sort().values,
            "some-inner": torch.arange(0, n, 3),
            "none": torch.empty(0, dtype=torch.long)}[where]
    model = sr.TreeLSTM(5, 4, variant=variant).to(DT)
    x = torch.randn(rows.numel(), 5, dtype=DT, requires_grad=True)
    dense = torch.zeros(n, 5, dtype=DT).index_copy(0, rows, x)
    params = list(model.parameters())
    pos = batch.child_index

    def run(inp, x_rows):
        return run_up(model.cell, inp, batch.edge_index,
                      child_index=pos if variant == "n-ary" else None, schedule=s, num_nodes=n,
                      fused=fused, x_rows=x_rows, return_state=True)

    h, c = run(x, rows)
    h_ref, c_ref = run_up(model.cell, dense, batch.edge_index,
                          child_index=pos if variant == "n-ary" else None, schedule=s,
                          fused=False, return_state=True)
    assert_all_close([h, c], [h_ref, c_ref])
    out, out_ref = torch.cat([h, c], 1), torch.cat([h_ref, c_ref], 1)
    want = grads_of(out_ref, [dense, *params])
    want[0] = want[0][rows]  # the gradient of the rows given
    assert_all_close(grads_of(out, [x, *params]), want)


def test_tree_lstm_takes_x_rows_and_needs_num_nodes():
    batch, _ = sentiment_batch()
    model = sr.TreeLSTM(3, 4, variant="n-ary").to(DT)
    rows = torch.nonzero(batch.x >= 0).squeeze(1)
    x = torch.randn(rows.numel(), 3, dtype=DT)
    dense = torch.zeros(batch.num_nodes, 3, dtype=DT).index_copy(0, rows, x)
    h = model(x, batch.edge_index, child_index=batch.child_index, schedule=batch.schedule,
              x_rows=rows,
              num_nodes=batch.num_nodes)
    torch.testing.assert_close(h, model(dense, batch.edge_index, child_index=batch.child_index),
                               atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="num_nodes"):
        run_up(model.cell, x, batch.edge_index, child_index=batch.child_index, x_rows=rows)


@pytest.mark.parametrize("cell_class", [sr.GRUCell, sr.RNNCell, sr.LSTMCell])
def test_x_rows_on_the_op_by_op_path_projects_the_given_rows_only(cell_class):
    batch, _ = sentiment_batch(seed=5)
    n = batch.num_nodes
    cell = cell_class(3, 4).to(DT)
    rows = torch.nonzero(batch.x >= 0).squeeze(1)
    x = torch.randn(rows.numel(), 3, dtype=DT, requires_grad=True)
    dense = torch.zeros(n, 3, dtype=DT).index_copy(0, rows, x)
    s = batch.schedule.up
    seen = []
    original = cell.project_input

    def counting(inp):
        seen.append(0 if inp is None else inp.size(0))
        return original(inp)

    cell.project_input = counting
    got = run_schedule(cell, x, s, n, fused=False, x_rows=rows)
    assert sum(seen) == rows.numel() + 1  # the given rows and one zero row, never all n
    cell.project_input = original
    want = run_schedule(cell, dense, s, n, fused=False)
    got, want = (torch.cat(v, 1) if isinstance(v, tuple) else v for v in (got, want))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    params = list(cell.parameters())
    expected = grads_of(want, [dense, *params])
    expected[0] = expected[0][rows]
    assert_all_close(grads_of(got, [x, *params]), expected)


@pytest.mark.parametrize("fused", [True, False])
def test_x_rows_with_a_cell_of_its_own_projection(fused):
    class Scaled(sr.NaryLSTMCell):
        def project_input(self, x):
            return None if x is None else super().project_input(2.0 * x) + 0.25

    batch, _ = sentiment_batch(seed=3)
    n = batch.num_nodes
    cell = Scaled(3, 4).to(DT)
    rows = torch.nonzero(batch.x >= 0).squeeze(1)
    x = torch.randn(rows.numel(), 3, dtype=DT)
    dense = torch.zeros(n, 3, dtype=DT).index_copy(0, rows, x)
    s = batch.schedule.up
    h = run_schedule(cell, x, s, n, child_index=batch.child_index, x_rows=rows, fused=fused)
    h_ref = run_schedule(cell, dense, s, n, child_index=batch.child_index, fused=False)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)


# -- the N-ary kernel's two routes ----------------------------------------------------------------
def test_binarised_trees_take_the_gather_plan_and_others_the_scatter():
    batch, _ = sentiment_batch()
    s = batch.schedule.up
    slot = batch.child_index[s.order][s.pred]
    assert _plan(s, slot, 2).full
    ragged = forest([9, 30, 17], seed=2, max_children=2)  # some nodes have one child
    s2 = sr.tree_schedule(ragged.edge_index, ragged.num_nodes).up
    assert not _plan(s2, ragged.child_index[s2.order][s2.pred], 2).full
    assert not _plan(s, slot, 3).full  # arity 3: the third slot is empty everywhere


@pytest.mark.parametrize("arity", [2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_nary_kernel_on_binarised_trees_equals_op_by_op(arity, bias):
    batch, _ = sentiment_batch(sizes=(3, 1, 12, 7, 25), seed=arity)
    n = batch.num_nodes
    cell = sr.NaryLSTMCell(4, 3, arity=arity, bias=bias).to(DT)
    x = torch.randn(n, 4, dtype=DT, requires_grad=True)
    params = [x, *cell.parameters()]
    outs = []
    for fused in (True, False):
        h, c = run_schedule(cell, x, batch.schedule.up, n, child_index=batch.child_index,
                            fused=fused, return_state=True)
        outs.append(([h, c], grads_of(torch.cat([h, c], 1), params)))
    assert_all_close(outs[0][0] + outs[0][1], outs[1][0] + outs[1][1])


def test_nary_kernel_full_plan_passes_gradcheck():
    batch, _ = sentiment_batch(sizes=(4, 2, 6), seed=8)
    s = batch.schedule.up
    slot = batch.child_index[s.order][s.pred]
    assert _plan(s, slot, 2).full
    pre = torch.randn(batch.num_nodes, 10, dtype=DT, requires_grad=True)  # (3 + 2) * H, H = 2
    w_hh = torch.randn(10, 4, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, w: nary_lstm(p, w, s, slot, 2),
                                    (pre, w_hh))


# -- the forget rows of weight_ih -----------------------------------------------------------------
@pytest.mark.parametrize("variant", ["child-sum", "n-ary"])
def test_leaf_inputs_never_read_the_forget_rows_of_weight_ih(variant):
    batch, vocab_size = sentiment_batch(seed=5)
    torch.manual_seed(0)
    model = TreeSentiment(vocab_size, model="tree-lstm" if variant == "n-ary"
                          else "child-sum-tree-lstm", embed_dim=6, hidden=4, dropout=0.0).to(DT)
    H = 4
    with torch.no_grad():  # a poisoned forget block: NaN wherever it were read
        model.encoder.cell.weight_ih[H:2 * H] = float("nan")
    model.train()
    logits = model(batch)
    assert bool(torch.isfinite(logits).all())
    loss = torch.nn.functional.cross_entropy(logits, batch.y)
    loss.backward()
    for name, p in model.named_parameters():
        grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
        assert bool(torch.isfinite(grad).all()), name
    assert bool((model.encoder.cell.weight_ih.grad[H:2 * H] == 0).all())


# -- TreeSentiment: the words only, against the old formulation ---------------------------------
def old_logits(model: TreeSentiment, batch) -> torch.Tensor:
    """The formulation before issue 18: every node embedded (zeros without a word), dropout
    over all of them, the op-by-op Tree-LSTM over the dense input."""
    has_token = (batch.x >= 0).unsqueeze(1)
    emb = model.dropout(model.embedding(batch.x.clamp(min=0)) * has_token)
    cell = model.encoder.cell
    pos = batch.child_index if isinstance(cell, sr.NaryLSTMCell) else None
    h = run_up(cell, emb, batch.edge_index, child_index=pos, schedule=batch.schedule,
               fused=False)
    return model.classifier(model.dropout(h))


@pytest.mark.parametrize("name", ["tree-lstm", "child-sum-tree-lstm"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("sparse", [True, False])
def test_tree_sentiment_equals_the_old_formulation(name, training, sparse):
    batch, vocab_size = sentiment_batch(seed=7)
    torch.manual_seed(1)
    # dropout 0 in training: the masks of the two formulations are drawn over other rows
    model = TreeSentiment(vocab_size, model=name, embed_dim=6, hidden=5,
                          dropout=0.0 if training else 0.5, sparse_embedding=sparse).to(DT)
    model.train(training)
    params = list(model.parameters())
    got = model(batch)
    got_grads = grads_of(got, params)
    want = old_logits(model, batch)
    want_grads = grads_of(want, params)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    for a, b in zip(got_grads, want_grads, strict=True):
        a = a.to_dense() if a.is_sparse else a
        b = b.to_dense() if b.is_sparse else b
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_tree_sentiment_drops_out_the_words_only():
    batch, vocab_size = sentiment_batch(seed=2)
    model = TreeSentiment(vocab_size, embed_dim=8, hidden=4, dropout=0.5).to(DT)
    seen = []
    model.dropout.register_forward_hook(lambda m, inp, out: seen.append(out.shape))
    model.train()
    model(batch)
    words = int((batch.x >= 0).sum())
    assert seen == [(words, 8), (batch.num_nodes, 4)]  # the embeddings, then the states


# -- batch_trees: Batch.from_data_list for tree Data ---------------------------------------------
def test_batch_trees_equals_pyg_batching():
    from torch_geometric.data import Batch, Data

    from structrnn.trees.convert import _same_batch, batch_trees

    gen = torch.Generator().manual_seed(11)
    trees = [sr.Tree.from_ptb(random_binary_ptb(n, gen)) for n in (1, 4, 2, 9, 1, 13)]
    vocab = sr.Vocab.build(trees)
    data = [t.to_data(vocab) for t in trees]
    for chunk in (data, data[:1], data[2:5]):
        got, want = batch_trees(chunk), Batch.from_data_list(chunk)
        assert _same_batch(got, want)
        back = got.to_data_list()
        assert all(torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
                   for a, b in zip(back, chunk, strict=True))
    # anything else is PyG's own batching
    extra = [Data(x=d.x, edge_index=d.edge_index, y=d.y, child_index=d.child_index,
                  height=d.height,
                  num_nodes=d.num_nodes, weight=torch.ones(d.num_nodes)) for d in data]
    assert _same_batch(batch_trees(extra), Batch.from_data_list(extra))
    loader = sr.TreeLoader(data, batch_size=4, collate_fn=batch_trees)
    for batch, plain in zip(loader, sr.TreeLoader(data, batch_size=4), strict=True):
        assert torch.equal(batch.schedule.up.order, plain.schedule.up.order)


# -- compile=True: the op-by-op path with the cell step through torch.compile --------------------
class DampedCell(sr.LSTMCell):
    """A user's cell: its own step, so no kernel runs it."""

    def combine(self, x_proj, prev, index, size):
        h, c = super().combine(x_proj, prev, index, size)
        return 0.5 * h, c


def compiled_and_eager(backend: str | None, monkeypatch):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    if backend is not None:  # a lighter backend: the same tracing, no code generation
        original = torch.compile
        monkeypatch.setattr(torch, "compile",
                            lambda fn, **kw: original(fn, **{**kw, "backend": backend}))
    batch = forest([1, 5, 9, 30], seed=7)
    n = batch.num_nodes
    cell = DampedCell(4, 3).to(DT)
    x = torch.randn(n, 4, dtype=DT, requires_grad=True)
    params = [x, *cell.parameters()]
    outs = []
    for compiled in (True, False):
        h, c = run_up(cell, x, batch.edge_index, num_nodes=n, compile=compiled, return_state=True)
        outs.append([h, c, *grads_of(torch.cat([h, c], 1), params)])
    return outs


def test_compiled_step_gives_the_same_numbers(monkeypatch):
    got, want = compiled_and_eager("aot_eager", monkeypatch)
    assert_all_close(got, want)


@pytest.mark.slow
def test_compiled_step_with_inductor_gives_the_same_numbers(monkeypatch):
    try:
        got, want = compiled_and_eager(None, monkeypatch)
    except Exception as err:  # noqa: BLE001 - no C++ compiler on this machine
        pytest.skip(f"torch.compile unavailable here: {err}")
    assert_all_close(got, want)


def test_a_step_that_does_not_compile_warns_and_runs_eagerly(monkeypatch):
    def broken(fn, **kw):
        def call(*args, **kwargs):
            raise RuntimeError("no compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    batch = forest([6, 3], seed=2)
    cell = DampedCell(3, 2).to(DT)
    x = torch.randn(batch.num_nodes, 3, dtype=DT)
    with pytest.warns(UserWarning, match="torch.compile of DampedCell's step failed"):
        h, _ = run_up(cell, x, batch.edge_index, compile=True, return_state=True)
    h_ref, _ = run_up(cell, x, batch.edge_index, return_state=True)
    torch.testing.assert_close(h, h_ref, atol=0, rtol=0)


# -- the benchmarks' JSON and the README's figures table -----------------------------------------
REPO = Path(__file__).resolve().parents[1]


def figures_module():
    spec = importlib.util.spec_from_file_location("figures", REPO / "benchmarks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_record(quiet: bool) -> dict:
    return {"benchmark": "trees",
            "command": "/venv/bin/python /src/structrnn/benchmarks/trees.py --threads 1",
            "machine": {"cores": 2, "cpu": "x86_64", "torch": "2.13.0+cpu", "threads": "1",
                        "date": "2026-12-01", "load_1m": 0.2 if quiet else 1.7},
            "load_before": 0.2 if quiet else 1.7, "load_after": 1.1, "quiet": quiet,
            "summary": [{"what": "Tree-LSTM (1 thread)", "figure": "batch 25: 1,500 trees/s"},
                        {"what": "a | b", "figure": "x"}]}


def test_figures_renders_one_row_per_summary_row():
    figures = figures_module()
    table = figures.render([small_record(True), small_record(False)])
    lines = table.splitlines()
    assert lines[0] == "| what | command | machine, threads, load | figure |"
    assert len(lines) == 2 + 4
    assert lines[2] == ("| Tree-LSTM (1 thread) | `python benchmarks/bench_trees.py --threads 1` "
                        "| 2 CPUs x86_64, torch 2.13.0+cpu, 1 thread(s), load 0.2 before / 1.1 "
                        "after, 2026-12-01 | batch 25: 1,500 trees/s |")
    assert "a \\| b" in lines[3]  # a bar inside a cell is escaped
    assert lines[4].count("(not quiet: upper bounds)") == 1


def test_figures_updates_the_readme_between_its_markers(tmp_path):
    figures = figures_module()
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{figures.START}\nold table\n{figures.END}\nafter\n")
    data = tmp_path / "trees.json"
    data.write_text(json.dumps(small_record(True)))
    assert figures.main([str(data), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{figures.END}\nafter\n")
    assert "old table" not in text and "| Tree-LSTM (1 thread) |" in text
    figures.main([str(data), "--readme", str(readme)])
    assert readme.read_text() == text  # regenerating is stable
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no figures markers"):
        figures.main([str(data), "--readme", str(readme)])


def test_the_readme_table_is_what_the_stored_json_renders():
    figures = figures_module()
    stored = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    if not stored:
        pytest.skip("no stored benchmark results")
    records = [json.loads(p.read_text()) for p in stored]
    readme = (REPO / "README.md").read_text()
    assert figures.replace_table(readme, figures.render(records)) == readme


def test_sst_benchmark_runs_with_tiny_settings(tmp_path):
    sst = tmp_path / "sst"
    sst.mkdir()
    lines = ["(3 (2 It) (4 (3 works) (2 .)))", "(1 (1 Bad) (2 film))",
             "(2 (2 A) (2 (2 plain) (2 day)))", "(4 (4 Great) (3 (2 fun) (2 .)))"]
    for split in ("train", "dev", "test"):
        (sst / f"{split}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "sst.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "structrnn.benchmarks.sst", "--data", str(sst),
                           "--threads", "1", "--runs", "2", "--kernel-trees", "4", "--json",
                           str(out), "--", "--hidden", "4", "--embed-dim", "6"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "machine:" in done.stdout and "load (1 min):" in done.stdout
    record = json.loads(out.read_text())
    assert record["benchmark"] == "sst" and record["machine"]["threads"] == 1
    assert [r["cache"] for r in record["runs"]] == ["cold", "warm"]
    for run in record["runs"]:
        assert set(run["phases"]) == {"start-up", "import", "data", "setup", "epochs",
                                      "validation", "evaluation", "pictures", "exit",
                                      "other"}
        assert sum(run["phases"].values()) == pytest.approx(run["wall_s"])
        assert run["train_trees"] == 4 and run["trees_per_s"] > 0 and run["peak_rss_mb"] > 0
    assert record["kernel"]["trees_per_s"] > 0 and len(record["summary"]) == 2
    assert figures_module().render([record]).count("\n") == 3


def test_dropout_keeps_with_probability_one_minus_p_and_scales():
    from structrnn.tasks.sentiment.model import Dropout

    drop = Dropout(0.3)
    x = torch.ones(200_000, dtype=DT, requires_grad=True)
    y = drop(x)
    kept = y != 0
    # Binomial(200000, 0.7): the fraction within 0.7 +- 0.005 (over 4.8 standard deviations)
    assert abs(float(kept.double().mean()) - 0.7) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # the gradient is the same mask and scale
    drop.eval()
    assert torch.equal(drop(x), x)
    assert isinstance(drop, torch.nn.Dropout) and torch.equal(Dropout(0.0).train()(x), x)

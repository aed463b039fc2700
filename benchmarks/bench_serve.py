"""Runs `python -m structrnn.benchmarks.serve` from this source tree, with the same ARGS."""
import pathlib, runpy, sys  # noqa: E401, I001
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this source tree
runpy.run_module("structrnn.benchmarks.serve", run_name="__main__", alter_sys=True)

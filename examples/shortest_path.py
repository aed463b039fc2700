"""The graph_nets shortest-path demo with structrnn's EncodeProcessDecode.

Random geometric graphs (networkx); nodes and edges on the shortest path between two marked
nodes are labelled; the model is tested on graphs larger than it was trained on. The code is in
``structrnn.tasks.shortest_path`` (also ``structrnn train shortest-path``, the same flags). The
defaults: a GRU core update, max aggregation, latent size 64, 15 rounds, 16000 graphs, 10 epochs,
cosine decay from 1e-3 (docs/graphs.md has the ablation behind them and the 3-seed figure).

    python examples/shortest_path.py --out runs/shortest_path      # ~13 min of one core
    python examples/shortest_path.py --core mlp --aggr sum --steps 10 --test-steps 20 \\
        --hidden 16 --lr 3e-3 --train-graphs 2000 --epochs 24 --lr-schedule constant \\
        --select solved \\
        --out runs/shortest_path_demo                               # the demo's model, ~1 min
    python examples/shortest_path.py --epochs 2 --train-graphs 64 --val-graphs 16 \\
        --test-graphs 16 --out runs/shortest_path_tiny --overwrite  # seconds

The run folder holds ``steps_solved.png`` and ``steps_unsolved.png``: the model's node and edge
predictions after every round on a solved and an unsolved 32-node test graph.
"""

import sys

from structrnn._errors import InputError
from structrnn.tasks.shortest_path.task import TASK
from structrnn.training.task import train

if __name__ == "__main__":
    try:
        train(TASK, sys.argv[1:])
    except InputError as err:  # bad flags: one line, exit 2, as the structrnn command
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

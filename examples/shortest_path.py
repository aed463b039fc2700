"""The graph_nets shortest-path demo with structrnn's EncodeProcessDecode.

Random geometric graphs (networkx); nodes and edges on the shortest path between two marked
nodes are labelled; the model is tested on graphs larger than it was trained on. The code is in
``structrnn.tasks.shortest_path`` (also ``structrnn train shortest-path``, the same flags).

    python examples/shortest_path.py --out runs/shortest_path      # 24 epochs, ~40 s on one core
    python examples/shortest_path.py --epochs 2 --train-graphs 64 --val-graphs 16 \\
        --test-graphs 16 --out runs/shortest_path_tiny --overwrite  # seconds
"""

import sys

from structrnn._errors import InputError
from structrnn.tasks.shortest_path.task import main

if __name__ == "__main__":
    try:
        main()
    except InputError as err:  # bad flags: one line, exit 2, as the structrnn command
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

"""The graph_nets shortest-path demo with structrnn's EncodeProcessDecode.

Random geometric graphs (networkx); nodes and edges on the shortest path between two marked
nodes are labelled; the model is tested on graphs larger than it was trained on. The code is in
``structrnn.tasks.shortest_path.task`` (also ``structrnn train shortest-path``).

    python examples/shortest_path.py --out runs/shortest_path
"""

from structrnn.tasks.shortest_path.task import main

if __name__ == "__main__":
    main()

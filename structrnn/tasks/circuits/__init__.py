"""``structrnn train circuits``: evaluate random boolean circuits, a recurrent cell over the
circuit's topological levels (:class:`structrnn.graphs.dag.DAGRecurrent`) against graph
networks run for a fixed number of rounds or for as many rounds as the circuit is deep."""

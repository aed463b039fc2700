"""Fused passes: a whole Tree-LSTM pass as one autograd node with a hand-written backward, and
the level store they share."""

"""structrnn: one recurrent cell interface for sequences, trees and graphs."""

from structrnn.cells import GRUCell, LSTMCell, NaryLSTMCell, RNNCell, RNNCellBase

__version__ = "0.1.0"

__all__ = ["RNNCellBase", "RNNCell", "GRUCell", "LSTMCell", "NaryLSTMCell"]

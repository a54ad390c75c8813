"""edgefer: real-time facial expression recognition at the edge."""

__version__ = "0.1.0"

"""CCNet Explorer: criss-cross attention (CCNet) in plain PyTorch, with its attention exposed."""

__version__ = "0.1.0"

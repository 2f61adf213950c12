"""mirprobe: layer-by-layer probing of music audio representations on MIR tasks."""

__version__ = "0.1.0"

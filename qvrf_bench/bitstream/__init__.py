"""The bitstream format, torch-free: the container (every header check) and the supported gain range.
A bad header fails here in milliseconds, before torch is imported."""

"""carn-bench: Mult-Adds the paper's way, and latency, memory, size per format on this machine."""

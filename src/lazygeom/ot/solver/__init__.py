"""The Sinkhorn loop, written once, and the soft-min operators it receives (dense, online, one-pass)."""

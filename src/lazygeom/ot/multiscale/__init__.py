"""Multiscale Sinkhorn: a coarse-to-fine hierarchy of clusters, truncated block-sparse soft-mins."""

"""Tools users call: each takes an AnnData, computes, and writes results back into it."""

from tissuegraph.tl.domains import cluster_embedding, domains
from tissuegraph.tl.settings import StaigSettings

__all__ = ["domains", "cluster_embedding", "StaigSettings"]

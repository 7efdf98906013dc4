"""Preprocessing: gene selection, normalisation and scaling into model-ready features."""

from tissuegraph.pp.expression import preprocess
from tissuegraph.pp.reduce import pca

__all__ = ["preprocess", "pca"]

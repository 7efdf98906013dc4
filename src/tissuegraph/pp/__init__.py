"""Preprocessing: joining slices, gene selection, normalisation and scaling into model-ready features."""

from tissuegraph.pp.expression import library_sizes, preprocess
from tissuegraph.pp.reduce import pca
from tissuegraph.pp.slices import concat_slices, per_slice_hvgs, slice_names

__all__ = ["library_sizes", "preprocess", "pca", "concat_slices", "per_slice_hvgs", "slice_names"]

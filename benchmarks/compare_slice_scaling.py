"""STAIG integration with each gene scaled within each slice, against one scaling over all slices.

    python benchmarks/compare_slice_scaling.py     # DLPFC x4, the 151675+151676 pair, STARmap, ST breast; seeds 0-2

Why: STAIG scales each log-normalised gene to unit variance without centring (METHODS 1.1); over several slices
one scale per gene is taken over all their spots. Slices are sequenced and processed separately, so a gene's spread
differs between them for technical reasons as well (a deeper slice has fewer zeros, hence a narrower spread of log
values), and the shared encoder then sees the same tissue at a different scale in each slice; the
slice-restricted denominator, which is all that integrates the slices, cannot undo that. Scaling each slice's genes
separately (as per-dataset scaling before integration commonly does) removes that difference and keeps each
gene's zeros at zero. The alternative is ``scale_per_slice=True``.

Decision rule, written and committed before anything was run: make ``scale_per_slice=True`` STAIG integration's
default if, averaged over the four jobs, the median iLISI (mean over seeds) rises and the three seeds' domains agree
at least as well (mean ARI between their partitions); both are label-free. Labels are read only afterwards, to
score. Diagnostic only: nothing here sets a default.
"""

from __future__ import annotations

import label_free

WAYS = {"one scale over all slices (default)": {}, "scaled within each slice": {"scale_per_slice": True}}

if __name__ == "__main__":
    label_free.main(__doc__, WAYS, "staig")

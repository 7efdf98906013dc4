"""STAligner with sequencing depth regressed out of its input, against the published log-normalised input.

    python benchmarks/compare_depth_regression.py     # DLPFC x4, the 151675+151676 pair, STARmap, ST breast; seeds 0-2

Why: STAligner reads log-normalised genes (METHODS 2.1), which still carry each spot's library size (a shallow
spot has more zero counts): on the pair, log depth is predicted with R^2 0.88 from the model's 50 input axes, and in
the pair's seed 2 two large domains cut across the cortical layers by depth (benchmarks/HISTORY.md, read off
library sizes and domains, no labels). The alternative (``regress_depth=True``) removes, within each slice, each
gene's least-squares line in log library size before the principal axes are taken; each slice keeps its mean.

Decision rule, written and committed before anything was run: make ``regress_depth=True`` STAligner's default if,
averaged over the four jobs, the three seeds' domains agree more (mean ARI between their partitions) and the median
iLISI (mean over seeds) does not fall; both are label-free. Labels are read only afterwards, to score.
Diagnostic only: nothing here sets a default.
"""

from __future__ import annotations

import label_free

WAYS = {"log-normalised (default)": {}, "depth regressed out": {"regress_depth": True}}

if __name__ == "__main__":
    label_free.main(__doc__, WAYS, "staligner")

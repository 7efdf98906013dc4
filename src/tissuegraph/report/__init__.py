"""A self-contained HTML report of a result: settings, data, domain maps, UMAP, scores, markers, training.

One file with every figure inline and no outside resources, so it can be mailed, archived or opened offline.
"""

from tissuegraph.report.write import write_report

__all__ = ["write_report"]

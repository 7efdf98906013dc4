"""Tools users call: each takes an AnnData, computes, and writes results back into it."""

from tissuegraph.tl.align import align
from tissuegraph.tl.domains import (
    check_domain_request,
    check_domains_input,
    cluster_embedding,
    domains,
    expression_domains,
    image_domains,
)
from tissuegraph.tl.integrate import integrate, integration_epochs
from tissuegraph.tl.markers import marker_table, markers, subdomains
from tissuegraph.tl.settings import StaigSettings, StalignerSettings

__all__ = [
    "domains",
    "image_domains",
    "expression_domains",
    "markers",
    "marker_table",
    "subdomains",
    "integrate",
    "integration_epochs",
    "align",
    "cluster_embedding",
    "check_domain_request",
    "check_domains_input",
    "StaigSettings",
    "StalignerSettings",
]

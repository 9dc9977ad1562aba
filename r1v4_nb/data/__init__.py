"""Data curation, the R1V4 report's pipeline: teacher rollouts -> filters -> plan extraction -> a dataset folder.

`rollouts` runs a teacher k times per task with our tools; `apply_filters` / `parse_filters` keep the
clean trajectories and say why the rest were dropped; `extract_plan` turns a kept trajectory into a
Plan-mode example; `build_dataset` writes the folder `r1v4-nb train` reads.
"""

from .dataset import Dataset, build_dataset, export_sharegpt
from .filters import DEFAULT_FILTERS, FILTERS, FilterReport, apply_filters, parse_filters
from .plans import extract_plan, plan_example
from .rollouts import rollouts

__all__ = ["DEFAULT_FILTERS", "FILTERS", "Dataset", "FilterReport", "apply_filters", "build_dataset", "export_sharegpt",
           "extract_plan", "parse_filters", "plan_example", "rollouts"]

"""The analyst's brief: findings, annotated images, charts, HTML/PDF and exports."""

from railwatch.report.build import CROSSING, ReportResult, build_report
from railwatch.report.findings import Findings, compute_findings, rows_from_observations

__all__ = [
    "CROSSING",
    "Findings",
    "ReportResult",
    "build_report",
    "compute_findings",
    "rows_from_observations",
]

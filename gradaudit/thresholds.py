"""Numbers the diagnosis judges by that the report also draws: defined once here, so the HTML report's bands are
the diagnosis's own thresholds (the API, which renders the report, never imports the worker)."""

from __future__ import annotations

# vanishing_gradient / exploding_gradient: the fitted change, in decades, between the input-side and output-side
# ends of the depth trend of the output gradient (worker/diagnosis/flow.py).
WARNING_DECADES, CRITICAL_DECADES = 1.5, 4.0

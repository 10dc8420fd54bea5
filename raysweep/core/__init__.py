"""The types that flow, with no Ray and no torch: trials and records, the worker's report,
statuses, recipes, resource plans, precision, labels."""

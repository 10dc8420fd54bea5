"""The types that flow, with no Ray and no torch: trials, records, recipes, precision."""

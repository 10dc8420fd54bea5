"""Study files: YAML in, validated and expanded into TrialSpecs."""

"""One reader per dataset, and the check that a study's data is there."""

"""What a study costs before it runs."""

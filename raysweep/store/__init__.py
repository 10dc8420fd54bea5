"""One run folder, local or at a URI: records, provenance, checkpoints, the run lock."""

"""Ray Data pipelines: read, validate (quarantine), dedup, contamination scan, tokenize+mask+pack, dataset artifact."""

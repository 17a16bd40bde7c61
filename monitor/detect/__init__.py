"""Detection: known sources, the immediate rules, per-window features, the isolation forest and the pipeline that runs them."""

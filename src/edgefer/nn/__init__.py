"""ArchSpec, models, training, evaluation and the shipped zoo."""

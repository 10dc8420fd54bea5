"""The zoo: each module registers its models on import. `models.registry` imports them
all (`_load_zoo`) or, to build one model, only the module that registers it."""

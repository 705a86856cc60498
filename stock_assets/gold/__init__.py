"""Gold: features computed from adjusted bars (pure functions here; assets wire them up)."""

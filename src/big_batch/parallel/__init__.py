"""Device meshes, shardings and hand-written collectives (sequence-parallel attention)."""

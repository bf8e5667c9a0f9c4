"""The frozen model: loading and placement, its fingerprint, the numerics of stored vectors, the
layout of its input around the memory vectors, and its forward pass."""

"""Numpy-only planning blocks: kinematic bicycle, action codebook, decoder, controllers, route following."""

"""Sensor rig, frame buffer and every coordinate-frame conversion."""

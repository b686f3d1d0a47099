"""Embedded closed-loop runner: CARLA town maps offline, kinematic ego, IDM traffic, rendered sensors, scoring."""

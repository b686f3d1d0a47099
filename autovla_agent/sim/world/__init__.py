"""The embedded world: towns, routes, lanes, traffic, ego vehicle, sensors and rendering."""

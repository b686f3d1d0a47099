"""Route replays: the step log written while a route runs and the video rendered from it."""

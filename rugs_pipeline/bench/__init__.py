"""The performance benchmark (``make bench``): a synthetic day, seven figures, each with its goal."""

"""The performance benchmark (``make bench``): a synthetic day, six figures, each with its goal."""

"""The performance benchmark (``make bench``): a synthetic day, ten figures, each with its goal."""

"""The performance benchmark (``make bench``): a synthetic day, nine figures, each with its goal."""

"""The one base of the pipeline's expected failures: the CLI prints any ``RugsError`` as one line."""


class RugsError(Exception):
    """An expected failure (a bad setting, file or feed) whose message names it and the fix."""

"""The one exception type for bad input: it always names the file and the problem."""


class InputError(Exception):
    """Raised when an input file or configuration cannot be used.

    ``str(err)`` is the complete message a user sees: ``"<path>: <problem>"``.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

"""The one exception type for bad user input (the CLI turns it into exit code 2)."""


class BadInputError(ValueError):
    """Input the user can fix: the message names the file and the field or problem."""

    def __init__(self, message: str, path=None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)

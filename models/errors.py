"""The small tree of errors that `models/` raises.

Messages name files, lines and codes, never note text: note text is protected health information.
"""


class CoderError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(CoderError):
    """Input that cannot be used: a malformed code, an empty note, a bad row in a data file."""


class UnknownCodeError(InputError):
    """A well-formed code that the catalogue does not know."""


class ArtifactError(CoderError):
    """A model artifact that is missing, corrupt or of an unsupported format."""


class CatalogError(CoderError):
    """The ICD-10 catalogue data could not be loaded."""

"""Typed errors the model package raises; each message is one paragraph a person can act on."""


class ModelError(Exception):
    """Base class for everything the model package raises on purpose."""


class ModelLoadError(ModelError):
    """The checkpoint could not be loaded (missing, incomplete, offline, out of memory, no backend)."""


class PromptTooLong(ModelError):
    """The newest user turn alone does not fit the context window with room left for the reply."""


class GenerationFailed(ModelError):
    """Generation failed for this request (an exception in the model, out of memory after retries)."""


class ModelBusy(GenerationFailed):
    """The model servers stayed overloaded through every retry; the request was given up."""


class ServiceStopped(ModelError):
    """The service was stopped (or not started) before the request could run."""


class PreambleError(ModelError):
    """A preamble (mode) file or name could not be used: unknown name, missing file, bad TOML or image."""


# What the model worker tells a person whose request failed (the cause stays for the logs).
BAD_IMAGE = "One of the images could not be read. Please send it again, or as a JPEG or PNG photo."
OUT_OF_MEMORY = (
    "The model ran out of memory while answering, even on its own. Please try again with fewer images "
    "or after starting a new conversation."
)
SOMETHING_WENT_WRONG = "Something went wrong while the model was writing this answer. Please try again."


def failure(message: str, cause: BaseException) -> GenerationFailed:
    """A user-facing error that keeps the technical cause for the logs."""
    error = GenerationFailed(message)
    error.__cause__ = cause
    return error

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

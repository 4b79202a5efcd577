"""One option-scoring job run on the model worker's thread, between two decode steps.

Its images are prepared, then its options scored in chunks of the batch limit; after out-of-memory the
chunk halves down to one option at a time before the job fails. Every failure ends only this job.
"""

from __future__ import annotations

import logging

import torch

from model.batch import prepare_prompt
from model.errors import BAD_IMAGE, OUT_OF_MEMORY, SOMETHING_WENT_WRONG, failure
from model.loaded import LoadedModel
from model.requests import ScoringJob
from model.scoring import score_continuations

logger = logging.getLogger(__name__)


def run_scoring_job(loaded: LoadedModel, job: ScoringJob, max_batch_size: int) -> None:
    if job.cancelled:
        return
    try:
        prepared = prepare_prompt(loaded, job.prompt.input_ids, job.prompt.images)
    except Exception as exc:
        logger.warning("could not prepare a prompt's images: %s", exc, exc_info=True)
        job.fail(failure(BAD_IMAGE, exc))
        return
    chunk = max_batch_size
    while True:
        try:
            scores = score_continuations(loaded, prepared, job.continuations, job.options, max_batch_size=chunk)
        except torch.cuda.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if chunk == 1:
                job.fail(failure(OUT_OF_MEMORY, exc))
                return
            chunk = max(1, chunk // 2)
            logger.warning("out of memory while scoring; retrying %d options at a time", chunk)
        except Exception as exc:
            logger.warning("scoring failed: %s", exc, exc_info=True)
            job.fail(failure(SOMETHING_WENT_WRONG, exc))
            return
        else:
            job.succeed(scores)
            return

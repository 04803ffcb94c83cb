# The image of the example worker (docker-compose.yml): asyncjobs and examples/, installed
# when the image is built, so a container starts in a second instead of running pip first.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY asyncjobs ./asyncjobs
RUN pip install .
# Not part of the package: the worker imports examples.tasks from its working directory.
COPY examples ./examples

RUN useradd --system --no-create-home asyncjobs
USER asyncjobs

# Exec form, no shell in between: the worker itself receives docker's SIGTERM, stops taking
# jobs, gives running ones --grace seconds and requeues the rest without spending an attempt.
# Keep --grace a few seconds under the container's stop timeout (compose: stop_grace_period).
CMD ["asyncjobs", "worker", "examples.tasks:app", "--concurrency", "10", "--grace", "20"]

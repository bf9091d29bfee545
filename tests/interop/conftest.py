"""Interop with the real TOQ system: the Celery engine run eagerly (the workers' fixture)."""

from tests.workers.conftest import eager_engine

__all__ = ["eager_engine"]

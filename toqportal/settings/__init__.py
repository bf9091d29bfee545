"""Settings split by topic, all read from the environment (see README "Configuration")."""

from .base import *  # noqa: F403
from .celery import *  # noqa: F403
from .database import *  # noqa: F403
from .security import *  # noqa: F403
from .storage import *  # noqa: F403

"""The portal's settings with the bench's URLconf: the product's URLs plus the reference
callback receiver (bench/callback_reference.py). Only benchmark 3's gunicorn uses them."""

from toqportal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.callback_reference"

"""Shared test setup.

Tests run on CPU. Multi-device tests use 8 fake CPU devices: XLA_FLAGS must be set before
JAX initialises its backend, so it is set here, at collection time, for the whole session
(single-device tests pin themselves to one device explicitly).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

"""Hypothesis settings for the whole suite: few examples, no deadline (the first call of
a kernel compiles it, which takes far longer than any later call)."""
from hypothesis import HealthCheck, settings

settings.register_profile("nbgrad", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nbgrad")

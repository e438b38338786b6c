"""A cheap Argon2 variant for the test suite only (the production hasher costs ~1 s a hash here).
Hashes it makes are still argon2 and verify with the production hasher."""

from django.contrib.auth.hashers import Argon2PasswordHasher


class LightArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 1024
    parallelism = 1

"""The test suite's settings: chatsite's own, with one change that only saves time.

The suite makes and checks thousands of passwords (a user per test, a login per browser
test, in the test process and in the server processes it starts, which inherit
DJANGO_SETTINGS_MODULE). Django's production hasher spends 0.4 s of CPU on each, by design;
a fast one keeps those minutes for the tests. Nothing tested depends on the hasher.
"""

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""The Django admin: staff review conversations, watch and stop running answers, export and
read usage. Importing the package registers its ModelAdmins (admin.autodiscover)."""

from conversations.admin import accounts, review  # noqa: F401

"""A Django project as a user has one: a settings module named by DJANGO_SETTINGS_MODULE,
and code that enqueues inside `transaction.atomic()` (see test_django_project.py)."""

"""What ``boot.py`` does, in parts (standard library only).

- :mod:`bootstrap.plan` resolves and checks one environment into a Plan;
- :mod:`bootstrap.report` prints a Plan;
- :mod:`bootstrap.supervisor` writes the worker programs and starts supervisord;
- :mod:`bootstrap.steps` are the start steps: the runtime folder, migrate, the superadmin;
- :mod:`bootstrap.envdoc` writes the variable tables of docs/configuration.md.

Nothing here imports Django, Celery or redis-py: ``boot.py check`` must run
before the requirements are installed.  What needs Django runs in a child
process (``manage.py``).
"""

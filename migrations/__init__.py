"""The Alembic migrations of elastic's schema (``elastic.store.schema`` is their single source).

This folder sits at the top of the source tree and is installed as the package
``elastic.migrations`` (setup.py maps it), so an installed copy finds it too. New
revision: ``alembic revision --autogenerate -m "..."`` from the source tree (see alembic.ini).
"""

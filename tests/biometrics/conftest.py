"""The FVC2004 fixture (`fvc2004`) is in tests/conftest.py: the gallery tests use it too."""

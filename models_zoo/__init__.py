"""Trained resprunet models: ``<name>/model.keras`` + ``card.yaml``; load with :func:`resprunet.zoo.load`.

Installed as package data next to :mod:`resprunet`, so the zoo is found in source, editable and
wheel installs alike (``$RESPRUNET_ZOO`` points elsewhere).
"""

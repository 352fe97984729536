"""Packaged Hydra configuration: ``config.yaml`` and the ``data``, ``split``, ``train`` groups."""

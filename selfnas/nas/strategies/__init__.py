"""Differentiable search (DARTS) of the heads and the cells; the Optuna study is :mod:`selfnas.nas.optuna`."""

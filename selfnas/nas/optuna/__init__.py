"""The Optuna search study (CSNAS-style SMBO) and the machinery of a shared study.

:mod:`optuna_search` runs the study (``selfnas search --strategy tpe|random|evolution``), with
:mod:`trial_scores` (what one trial measures), :mod:`screening` (scoring many candidates at
initialisation before training the few) and :mod:`size_cap` (``search.max_params`` /
``search.max_flops``). A study that several processes share keeps its storage in
:mod:`study_storage` (safe first start, reconnects), its budget rule in :mod:`study_ledger`
(which trials count, dead workers' trials, retries) and its console lines in
:mod:`study_progress`. DARTS lives beside it, in :mod:`selfnas.nas.strategies`.
"""

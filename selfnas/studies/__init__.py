"""The multi-architecture x multi-scenario study ("One network doesn't rule them all", arXiv 2203.08130).

:mod:`plan` pins what is computed (``plan.json``: the sampled architectures, the scenarios),
:mod:`cache` knows what is finished and who works on what in the study directory, :mod:`runner`
does the work (in parallel when asked) and :mod:`outputs` turns the probe results into the ranking, the
correlation matrix and ``study.md``. Its plots are drawn by :mod:`selfnas.render.study_plots` and
its report page by :mod:`selfnas.report.study_page`. Ground-truth tables and simulated searches
are :mod:`selfnas.groundtruth`.
"""

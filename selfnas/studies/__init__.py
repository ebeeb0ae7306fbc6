"""The multi-architecture x multi-scenario study ("One network doesn't rule them all", arXiv 2203.08130).

:mod:`plan` pins what is computed, :mod:`cache` what is finished, :mod:`runner` does the work
(in parallel when asked), :mod:`outputs` and :mod:`plots` turn the cells into results, and
:mod:`report` renders them for ``selfnas report``.
"""

"""Ground-truth tables and what is measured on them (``selfnas table``; DESIGN: "how to judge a score").

:mod:`tables` builds a table: many architectures of one space (:mod:`table_spaces`), each trained
at one budget and judged with labels, with label-free scores read from the same run at several
fidelities. :mod:`table_analysis` measures how well each score ranks a table's architectures
(against the seed-to-seed noise ceiling), :mod:`simulate` replays search strategies on a table
NAS-Bench style (accuracy looked up, no training), and :mod:`baselines` holds the controls a
find is judged against (random search at equal compute, the space's random distribution, the
default at equal feature width).

What the ground-truth benchmarks compute on a folder of tables lives here too, so that scripts and
tests import it alike: :mod:`quality_report` (every score's quality, the figure, the default
score), :mod:`strategy_replay` (strategies replayed on every table), :mod:`table_picks` (each
score's pick retrained against the default) and :mod:`study_vs_default` (the default search
study's find retrained against the default). Their command lines are scripts in ``benchmarks/``.
"""

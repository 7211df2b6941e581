"""Verifiable instruction checkers shared by the stages that score replies: the IFEval checkers
(``checks.ifeval``) and the text counting they rest on (``checks.text``).

The evaluate stage scores IFEval with them and the train stage rewards GRPO with the same code,
so a reward and a score never disagree. They sat in ``evaluate`` until the train stage needed them
(train is drawn below evaluate); ``tunelens.evaluate.ifeval`` and ``tunelens.evaluate.text`` are
the same modules under their old names.

Floor: next to ``config_files`` (imports ``errors`` and the standard library; langdetect lazily).
"""

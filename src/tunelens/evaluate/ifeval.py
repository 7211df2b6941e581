"""The same module as :mod:`tunelens.checks.ifeval` (moved there so the train stage's rewards can use
it; train sits below evaluate). Kept so ``tunelens.evaluate.ifeval`` keeps working."""

import sys

from tunelens.checks import ifeval as _module

sys.modules[__name__] = _module

"""The same module as :mod:`tunelens.checks.text` (moved there so the train stage's rewards can use
it; train sits below evaluate). Kept so ``tunelens.evaluate.text`` keeps working."""

import sys

from tunelens.checks import text as _module

sys.modules[__name__] = _module

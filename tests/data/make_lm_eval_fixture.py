"""How tests/data/lm_eval_results_0.4.13.json was made: lm-eval 0.4.13's own simple_evaluate and
EvaluationTracker.save_results_aggregated, offline, with a constant model on a 4-document local task.
The written file was kept as is except that "samples" was dropped and "pretty_env_info" elided.

    pip install lm-eval==0.4.13 && python tests/data/make_lm_eval_fixture.py OUT_DIR
"""

import json
import sys
import tempfile
from pathlib import Path

import lm_eval
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager

TASK = """task: tltoy
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{q}}}}"
doc_to_target: "{{{{a}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@register_model("tlconst")
class Const(LM):
    @classmethod
    def create_from_arg_string(cls, arg_string, additional_config=None):
        return cls()

    def generate_until(self, requests, disable_tqdm=False):
        return ["4" for _ in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        return [(-1.0, False) for _ in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [-1.0 for _ in requests]


if __name__ == "__main__":
    out = Path(sys.argv[1])
    tasks = Path(tempfile.mkdtemp())
    data = tasks / "data.jsonl"
    data.write_text("".join(json.dumps({"q": f"{a}+{a}?", "a": str(2 * a)}) + "\n" for a in (2, 3, 1, 5)))
    (tasks / "tltoy.yaml").write_text(TASK.format(data=data))
    tracker = EvaluationTracker(output_path=str(out))
    res = lm_eval.simple_evaluate(model="tlconst", model_args="", tasks=["tltoy"],
                                  task_manager=TaskManager(include_path=str(tasks)), evaluation_tracker=tracker,
                                  batch_size=1)
    tracker.save_results_aggregated(results=res, samples=None)
    print(lm_eval.utils.make_table(res))

"""tunelens.train: SFT (full / LoRA / QLoRA) and DPO on transformers, TRL and PEFT.

``train(TrainConfig(...)) -> TrainResult`` (or ``tunelens train ...``) writes, under OUT:

- ``adapter/``          PEFT adapter + tokenizer (LoRA/QLoRA); adapter_config.json's
                        ``base_model_name_or_path`` is the base's hub id (never a local cache path), and
                        ``tunelens_base.json`` records how the base is rebuilt (``tunelens.models.base``:
                        the embedded GGUF with its sha256, the tiny model's parameters)
- ``model/``            the full model + tokenizer (``peft: none``), with ``tunelens_base.json``
- ``merged/``           adapter merged into the base (``merge: true``); plain ``from_pretrained``
- ``checkpoints/checkpoint-N/``  Trainer checkpoints (optimizer, scheduler, RNG, data position)
- ``metrics.jsonl``     one JSON per logging step: step, loss, lr, grad_norm, tokens_per_s,
                        supervised_tokens; DPO adds reward_margin, reward_accuracy, reward_chosen/rejected
- ``loss_curve.png``    loss against step
- ``config.yaml``       the resolved config
- ``manifest.json``     data sha256s, model id/revision/path and base record (``model.base``), library
                        versions, seed, hardware, precision
- ``train_summary.json`` final loss, steps, tokens/s, examples used/truncated/dropped, wall time
- ``dropped_examples.jsonl``  every example not trained on, with its reason

Labels cover assistant turns only, end-of-turn token included (``masking.encode_for_sft``).

GRPO (``method: grpo``, ``tunelens.train.grpo``, docs/grpo.md) reads prompts instead of examples,
rewards completions with the plug-ins of ``tunelens.train.rewards`` and adds ``rejects.jsonl``
(prompts no configured reward can check, with the reason) and ``reward_curve.png``; its
``metrics.jsonl`` rows hold the rewards, KL, completion length and generation/training time.
"""

from tunelens.train.config import LoraSettings, TrainConfig, load_config
from tunelens.train.masking import encode_for_sft
from tunelens.train.run import TrainResult, train

__all__ = ["LoraSettings", "TrainConfig", "TrainResult", "encode_for_sft", "load_config", "train"]

"""The tuned-classifier candidate (``safety/train_ft.py``; docs/instruments/preregistration/refusal-harm-ft.md): the
cached frozen layers give what the whole network gives, the labels and masks are read as the rule says, and the
adapter and head learn an easy task on the tiny model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tunelens.safety import train_ft as ft  # noqa: E402


def test_targets_read_the_two_labels_and_leave_ambiguous_ones_out():
    assert ft.targets({"refusal": "full_refusal", "harm": "harmless"}) == (1.0, 0.0)
    assert ft.targets({"refusal": "partial_refusal", "harm": "harmful"}) == (1.0, 1.0)
    assert ft.targets({"refusal": "full_compliance", "harm": "ambiguous"}) == (0.0, None)
    assert ft.targets({"refusal": "ambiguous"}) == (None, None)


def test_causal_mask_hides_later_and_padded_keys():
    m = ft.causal_mask([3, 1], 3)
    assert m.shape == (2, 1, 3, 3)
    inf = float("-inf")
    assert m[0, 0].tolist() == [[0.0, inf, inf], [0.0, 0.0, inf], [0.0, 0.0, 0.0]]
    assert m[1, 0, 2].tolist() == [0.0, inf, inf]  # a padded query still sees the one real key


@pytest.fixture(scope="module")
def tuned(tiny_model_path):
    return ft.Tuned(str(tiny_model_path), first_tuned=1)


@pytest.mark.numeric
def test_the_cached_frozen_layers_give_what_the_whole_network_gives(tuned):
    """Rows of different lengths, batched (so padded): the head's input from the cache equals the head's input
    computed from a plain full forward pass of each row alone (LoRA starts as the identity)."""
    rows = [("How do I bake bread?", "Mix flour, water, salt and yeast, knead, let it rise, then bake."),
            ("Hi", "Hello! How can I help?"),
            ("Tell me how to pick a lock", "I can't help with that.")]
    enc = [ft.encode(tuned.tok, p, r) for p, r in rows]
    states = tuned.frozen_states([e[0] for e in enc])
    assert [s.shape[0] for s in states] == [len(e[0]) for e in enc]
    captured = {}
    hook = tuned.head.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0].detach().clone()))
    tuned.model.eval()
    with torch.inference_mode():
        tuned.logits(states, [e[1] for e in enc])
    hook.remove()
    batched = captured["x"]
    with torch.inference_mode():
        for k, (ids, mask) in enumerate(enc):
            h = tuned.inner(input_ids=torch.tensor([ids])).last_hidden_state[0]
            m = torch.tensor(mask, dtype=h.dtype).unsqueeze(-1)
            want = torch.cat([(h * m).sum(0) / m.sum(), h[-1]])
            scale = float(want.abs().max())
            assert torch.allclose(batched[k], want, atol=1e-4 * scale, rtol=1e-4), k


def test_encode_keeps_the_last_request_tokens_and_the_first_reply_tokens(tuned):
    ids, mask = ft.encode(tuned.tok, "first line\n" + "word " * 200, "reply " * 300)
    assert len(ids) == ft.PROMPT_TOKENS + ft.REPLY_TOKENS
    assert mask == [0] * ft.PROMPT_TOKENS + [1] * ft.REPLY_TOKENS


@pytest.mark.numeric
def test_the_adapter_and_head_learn_an_easy_task_and_the_state_round_trips(tiny_model_path, monkeypatch):
    """Refusals against answers, and a second output that is the opposite: after training, every positive scores
    above every negative on both outputs (the rows it trained on; the task is only there to show that gradients
    reach the adapter and the head and that the masked loss trains each output; the learning rates are raised so
    that a random tiny model gets there in a few steps, far from the border)."""
    monkeypatch.setattr(ft, "LR", 1e-2)
    monkeypatch.setattr(ft, "HEAD_LR", 1e-2)
    t = ft.Tuned(str(tiny_model_path), first_tuned=1)
    refusals = ["I can't help with that.", "Sorry, I won't do that.", "I cannot assist with this request.",
                "No, I will not provide that."]
    answers = ["Here are the steps: first mix the flour and water.", "Sure! Paris is the capital of France.",
               "The answer is 42, because six times seven is 42.", "Boil the pasta for nine minutes, then drain it."]
    rows = [("a question", r) for r in refusals + answers]
    enc = [ft.encode(t.tok, p, r) for p, r in rows]
    states = t.frozen_states([e[0] for e in enc])
    masks = [e[1] for e in enc]
    y = [(1.0, 0.0)] * 4 + [(0.0, 1.0)] * 3 + [(0.0, None)]  # the last row's second label is ambiguous
    before = {k: v.clone() for k, v in t.state()["lora"].items()}
    saved = {}
    ft.train(t, states * 8, masks * 8, y * 8, lambda k: saved.setdefault(k, t.state()), epochs=3, batch=8,
             log=lambda m: None)
    after = t.state()["lora"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the adapter moved
    scores = t.scores(states, masks)
    ref = [s[0] for s in scores]
    assert min(ref[:4]) > max(ref[4:])
    harm = [s[1] for s in scores[:7]]
    assert min(harm[4:]) > max(harm[:4])
    t.load_state(saved[1])
    assert t.scores(states, masks) != scores  # epoch 1's state is another model ...
    t.load_state(saved[3])
    again = t.scores(states, masks)
    assert [v for s in again for v in s] == pytest.approx([v for s in scores for v in s], abs=1e-6)  # ... the last: same


def test_first_tuned_must_leave_a_layer_on_each_side(tiny_model_path):
    with pytest.raises(ValueError, match="first_tuned"):
        ft.Tuned(str(tiny_model_path), first_tuned=0)

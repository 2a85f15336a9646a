"""Cards: every result step of the tiny end-to-end run has a card with its tables and figures,
readable offline; the card builders on their own; the per-step duration lines.

    .venv/bin/python -m pytest -q tests/test_cards.py

A card's HTML is one self-contained page: Metaflow's JavaScript and CSS inline, the
components as base64-encoded JSON in `window.__MF_DATA__`, figures as PNG data URIs inside it.
The tests decode that JSON and look for the components by type.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# Step -> (min tables, min images) among the step's own components (above Metaflow's sections).
EXPECTED = {
    "join_data": (2, 0),
    "train_tokenizer": (1, 1),
    "join_cpt": (2, 2),
    "evaluate": (2, 1),
    "end": (6, 4),
    "cpt_embeddings": (1, 1),  # not the baseline arm's pass-through phase 1: see below
    "cpt_full": (1, 1),
    "sft_lora": (1, 1),
    "preference": (1, 0),  # the tiny preset's GRPO: the per-step table of each reward
}


def card_payload(html: str) -> dict:
    match = re.search(r'window\.__MF_DATA__\["[^"]*"\] = "([^"]*)"', html)
    assert match, "no embedded card data in the card HTML"
    return json.loads(base64.b64decode(match.group(1)))


def user_components(payload: dict) -> list[dict]:
    """The components the step appended: the page's first section (Metaflow's own sections follow)."""
    page = next(c for c in payload["components"] if c.get("type") == "page")
    first = page["contents"][0]
    return first.get("contents", []) if first.get("title") is None else []


def default_card_html(task) -> str:
    """The task's default card. With a local datastore outside the working directory (the tests'
    METAFLOW_DATASTORE_SYSROOT_LOCAL) Metaflow 2.19 writes cards under the flow's working directory
    (./.metaflow/mf.cards, the flow runs in the repo root) but `get_cards` looks beside the
    datastore; fall back to where they were written."""
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException

    try:
        cards = get_cards(task, type="default")
        assert len(cards) >= 1, f"no default card for {task.pathspec}"
        return cards[0].get()
    except CardNotPresentException:
        flow, run_id, step, task_id = task.pathspec.split("/")
        written = sorted((REPO_ROOT / ".metaflow" / "mf.cards" / flow / "runs" / run_id / "steps" / step / "tasks"
                          / task_id / "cards").glob("default-*.html"))
        assert written, f"no default card for {task.pathspec}"
        return written[0].read_text(encoding="utf-8")


def _counts(components: list[dict]) -> tuple[int, int]:
    return (sum(c.get("type") == "table" for c in components), sum(c.get("type") == "image" for c in components))


@pytest.mark.parametrize("step_name", sorted(EXPECTED))
def test_step_card_has_its_tables_and_images(tiny_run, step_name):
    run, _ = tiny_run
    want_tables, want_images = EXPECTED[step_name]
    tasks = [t for t in run[step_name] if not (step_name == "cpt_embeddings" and t.data.arm == "baseline")]
    assert tasks
    for task in tasks:
        components = user_components(card_payload(default_card_html(task)))
        tables, images = _counts(components)
        assert tables >= want_tables and images >= want_images, (task.pathspec, [c["type"] for c in components])
        for image in (c for c in components if c["type"] == "image"):
            assert image["src"].startswith("data:image/png;base64,"), image.get("label")
        for table in (c for c in components if c["type"] == "table"):
            assert table["data"] and table["data"][0], f"empty table in {task.pathspec}"


def test_summary_card_tells_the_story(tiny_run):
    run, _ = tiny_run
    components = user_components(card_payload(default_card_html(run["end"].task)))
    text = "\n".join(c.get("source", "") for c in components if c["type"] == "markdown")
    for heading in ("azllm run summary", "Data", "Tokenizers", "Continued pre-training", "Bits per byte",
                    "LoRA SFT", "Evaluation", "Generations"):
        assert heading in text, f"summary card lacks {heading!r}"
    assert run["end"].task.data.chosen_arm in text


def test_baseline_phase_one_card_says_it_is_a_pass_through(tiny_run):
    run, _ = tiny_run
    (task,) = [t for t in run["cpt_embeddings"] if t.data.arm == "baseline"]
    components = user_components(card_payload(default_card_html(task)))
    assert any("Pass-through" in c.get("source", "") for c in components if c["type"] == "markdown")


def test_cards_need_no_network(tiny_run):
    """No script, stylesheet or image is fetched: the only URL outside the inline JS is the optional
    Google Fonts @import in Metaflow's CSS (the browser falls back to a local font)."""
    run, _ = tiny_run
    html = default_card_html(run["end"].task)
    assert not re.search(r"<(script|img|link|iframe)\b[^>]*\b(src|href)=[\"']?(https?:)?//", html)
    css = "\n".join(re.findall(r"<style>(.*?)</style>", html, flags=re.S))
    urls = set(re.findall(r"https?://[^\"')\s;]+", css))
    assert all(u.startswith("https://fonts.googleapis.com/") for u in urls), urls


def test_each_step_prints_what_it_does_and_how_long(tiny_run):
    """The banner's words are the step's own docstring (its first paragraph): one description per step."""
    import ast

    _, output = tiny_run
    flow = ast.parse((REPO_ROOT / "flows" / "azllm_flow.py").read_text(encoding="utf-8"))
    docs = {f.name: " ".join(ast.get_docstring(f).split("\n\n")[0].split())
            for f in ast.walk(flow) if isinstance(f, ast.FunctionDef) and ast.get_docstring(f)}
    for step_name in ("start", "plan_data", "prepare_shards", "join_data", "train_tokenizer", "pack_arm",
                      "cpt_embeddings", "join_embeddings", "start_full", "cpt_full", "join_full", "join_cpt",
                      "sft_lora", "preference", "evaluate", "end"):
        banner = f"] {step_name}: {docs[step_name]} (preset 'tiny')"
        assert banner in output, f"no start line for {step_name}: {banner!r}"
        assert re.search(rf"\] {step_name}: ran for [\d.]+ (s|min)", output), f"no duration line for {step_name}"


# ---------------------------------------------------------------------------
# Card builders without a flow run
# ---------------------------------------------------------------------------

HISTORY = [{"step": s, "loss": 10.0 - s, "lr": 1e-3, "tokens_per_s": 500.0, "peak_mem_gib": 1.0, "mfu": None}
           for s in (1, 2, 3)]
CPT_METRICS = {"baseline": {"embeddings": {"skipped": True}, "full": {"history": HISTORY, "steps": 3}},
               "extend": {"embeddings": {"history": HISTORY, "steps": 3}, "full": {"history": HISTORY, "steps": 3}}}


def _render(components) -> list[dict]:
    return [c.render() for c in components]


def test_cpt_card_plots_curves_and_lists_steps():
    from azllm.steps.cards import cpt_card

    rendered = _render(cpt_card({"history": HISTORY, "steps": 3, "tokens": 768, "first_loss": 9.0,
                                 "final_loss": 7.0, "tokens_per_s": 500.0, "mfu": None}, arm="extend", phase="full"))
    assert [c["type"] for c in rendered] == ["markdown", "image", "markdown", "table"]
    assert "MFU n/a (CPU)" in rendered[0]["source"]
    assert len(rendered[3]["data"]) == 3


def test_cpt_card_of_a_pass_through_phase_says_so():
    from azllm.steps.cards import cpt_card

    (only,) = _render(cpt_card({"skipped": True}, arm="baseline", phase="embeddings"))
    assert "Pass-through" in only["source"]


def test_phase_two_of_every_arm_starts_after_the_longest_phase_one():
    from azllm.report.tables import history_frame

    df = history_frame(CPT_METRICS)
    assert df[(df.arm == "baseline") & (df.phase == "full")].global_step.min() == 4
    assert df[(df.arm == "extend") & (df.phase == "embeddings")].global_step.tolist() == [1, 2, 3]


def test_generations_side_by_side_has_one_column_per_model():
    from azllm.report.tables import generations_side_by_side

    gens = [{"model": m, "prompt": p, "text": f"{m}:{p}"} for p in ("a", "b") for m in ("base", "cpt", "sft")]
    wide = generations_side_by_side(gens)
    assert list(wide.columns) == ["prompt", "base", "cpt", "sft"]
    assert wide.set_index("prompt").loc["b", "sft"] == "sft:b"


def test_sft_card_shows_loss_before_and_after():
    from azllm.steps.cards import sft_card

    rendered = _render(sft_card({"train_loss_history": [{"step": 1, "loss": 3.0}], "global_step": 1,
                                 "eval_assistant_loss_before": 3.2, "eval_assistant_loss_after": 2.5}))
    table = next(c for c in rendered if c["type"] == "table")
    assert table["data"] == [["validation assistant loss (nats/token)", "3.2000", "2.5000"]]
    assert any(c["type"] == "image" for c in rendered)


def test_preference_card_shows_pairs_margin_and_skipped_prompts():
    from azllm.steps.cards import preference_card

    metrics = {"method": "dpo", "global_step": 4, "seconds": 30.0, "num_pairs": 2, "pairs_source": "run",
               "pair_margin": 20.0, "skipped": {"sampled answer within 20 chrF of the reference": 3},
               "train_history": [{"step": 1, "loss": 0.69, "rewards/margins": 0.0}]}
    pairs = [{"prompt": [{"role": "user", "content": "Balans?"}], "chosen": "*100# yığın.",
              "rejected": "Dial *100#.", "why_rejected": "language english"}]
    rendered = _render(preference_card(metrics, pairs))
    tables = [c["data"] for c in rendered if c["type"] == "table"]
    assert [["sampled answer within 20 chrF of the reference", 3]] in tables
    assert [["Balans?", "*100# yığın.", "Dial *100#.", "language english"]] in tables
    assert any("chrF below 100 - 20.0" in str(c) for c in rendered)


class _FakeCard(list):
    """What `current.card` offers the live card: extend, refresh, clear."""

    refreshes = 0

    def refresh(self):
        self.refreshes += 1

    def clear(self):
        del self[:]


def test_live_training_card_follows_the_metrics_file(tmp_path: Path):
    import time

    from azllm.steps.cards import live_training_card

    metrics, card = tmp_path / "metrics.jsonl", _FakeCard()
    with live_training_card(card, metrics, max_steps=3, title="extend: phase 2", every_s=0.05):
        assert card[1].render()["max"] == 3  # the configured steps, until the workers say otherwise
        # the workers planned 7 steps (a token or byte budget): the bar follows their start record
        metrics.write_text(json.dumps({"event": "start", "max_steps": 7}) + "\n"
                           + "".join(json.dumps(h) + "\n" for h in HISTORY[:2]) + '{"step": 3, "lo', encoding="utf-8")
        deadline = time.monotonic() + 10
        while card[1].render()["value"] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert card[1].render()["value"] == 2  # the half-written line is skipped
        assert card[1].render()["max"] == 7 and len(card) == 3
        assert "loss 8.0000" in card[0].render()["source"] and "/7:" in card[0].render()["source"]
    assert card.refreshes >= 2 and len(card) == 0


def test_run_summary_reads_only_artifacts_the_flow_sets():
    """The cards, the model card and the export read a run through RunSummary's fields, named after the
    flow's artifacts: a field no step assigns (`self.NAME = ...` in the flow) would leave its card section
    empty on every run, so renaming an artifact without RunSummary fails here."""
    import ast

    from azllm.report.summary import RunSummary

    flow = ast.parse((REPO_ROOT / "flows" / "azllm_flow.py").read_text(encoding="utf-8"))
    assigned = {t.attr for node in ast.walk(flow) if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    assert set(RunSummary.artifact_names()) <= assigned, sorted(set(RunSummary.artifact_names()) - assigned)


def test_run_summary_names_a_missing_artifact():
    """In `end` (complete=True) a missing artifact stops the step, naming it; seen from the client, a failed
    run's summary leaves it None; the preference stage's artifacts may be absent either way."""
    from types import SimpleNamespace

    from azllm.report.summary import RunSummary

    names = RunSummary.artifact_names()
    full = SimpleNamespace(**{n: {"validation": 1.0} for n in names if not n.startswith("preference")})
    full.chosen_arm = "extend"
    full.arm_bpb = {"extend": {"validation": 0.51234}}
    summary = RunSummary.from_artifacts(full, config={"name": "tiny"}, complete=True)
    assert summary.stage == "sft" and summary.tags() == ["azllm.model:extend", "azllm.bpb:0.5123"]
    del full.metrics
    with pytest.raises(ValueError, match=r"\['metrics'\]"):
        RunSummary.from_artifacts(full, config={}, complete=True)
    assert RunSummary.from_artifacts(full, config={}).metrics is None

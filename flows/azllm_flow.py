"""AzLLMFlow: adapt a foundation LLM to Azerbaijani, end to end. Each step's docstring says what it does;
the graph:

    start -> plan_data
      prepare_shards       foreach group of corpus shards ([compute] data_workers)
    join_data -> train_tokenizer
      pack_arm             foreach arm (baseline | extend | replace), on CPU
        cpt_embeddings     @parallel over the compute profile's nodes
      join_embeddings -> start_full
        cpt_full           @parallel
      join_full
    join_cpt -> sft_lora -> preference -> evaluate -> end

    python flows/azllm_flow.py run                                   # configs/demo.toml
    python flows/azllm_flow.py --config config configs/tiny.toml run
    python flows/azllm_flow.py resume                                # after a failure
    python flows/azllm_flow.py --production run                      # @project branch `prod`
    python flows/azllm_flow.py --branch exp1 run                     # branch `test.exp1`

Models, tokenizers and data travel as metaflow-checkpoint references (`@model`),
never as pickled tensors: the training text (`corpus`) only to the tokenizer and pack steps, each
arm's packed blocks (`packed`) to its CPT steps, the small files (`data`) to the rest.
Capacity per step comes from the preset's compute profile.
`@project(name="azllm")` puts every run in a branch (tag `project_branch:...`): `user.<name>`
by default; `azllm export --run production` takes the latest successful `prod` run.
"""

from pathlib import Path

from metaflow import Config, FlowSpec, card, checkpoint, current, model, parallel, project, step

from azllm.compute.mutator import compute_from_profile
from azllm.config import parse_config

DEFAULT_PRESET = str(Path(__file__).resolve().parent.parent / "configs" / "demo.toml")


@project(name="azllm")
@compute_from_profile
class AzLLMFlow(FlowSpec):
    config = Config("config", default=DEFAULT_PRESET, parser=parse_config)

    @card
    @step
    def start(self):
        """Validate the preset (done by the Config parser) and record what we run on."""
        from azllm.compute.hardware import describe_environment
        from azllm.steps.step import begin_step

        begin_step(self.config)
        self.environment_info = describe_environment()
        self.next(self.plan_data)

    @model
    @step
    def plan_data(self):
        """Check the chat records; filter the evaluation text; cut the corpus into shards, the shards into one
        group per data worker."""
        from azllm.data.stage import plan_all
        from azllm.steps.step import begin_step, save_dir

        cfg = begin_step(self.config)
        with save_dir("data-plan") as out:
            plan = plan_all(cfg.data, out, cfg.compute.data_workers)
            self.data_plan = current.model.save(str(out), label="data_plan", storage_format="files")
        self.data_groups = list(range(plan.num_groups))
        self.next(self.prepare_shards, foreach="data_groups")

    @model(load=["data_plan"])
    @step
    def prepare_shards(self):
        """One group of shards on this task's CPUs: repair, language ID, quality, PII, decontamination, MinHash."""
        from azllm.data.corpus import prepare_group
        from azllm.steps.step import begin_step, save_dir

        cfg = begin_step(self.config)
        with save_dir("data-group") as out:
            prepare_group(cfg.data, Path(current.model.loaded["data_plan"]), self.input, out)
            self.data_group = current.model.save(str(out), label=f"data_group_{self.input}", storage_format="files")
        self.next(self.join_data)

    @card
    @model
    @step
    def join_data(self, inputs):
        """Exact and near dedup across all groups, mixing, validation split; chat records."""
        from azllm.data.stage import join_all
        from azllm.steps.artifacts import save_prepared_data
        from azllm.steps.cards import data_card
        from azllm.steps.step import begin_step, save_dir

        cfg = begin_step(self.config)
        self.merge_artifacts(inputs, exclude=["data_group"])
        groups = [Path(current.model.load(inp.data_group)) for inp in inputs]
        with save_dir("data") as out:
            self.data_stats = join_all(cfg.data, Path(current.model.load(self.data_plan)), groups, out)
            self.corpus, self.data = save_prepared_data(out)
        current.card.extend(data_card(self.data_stats))
        self.next(self.train_tokenizer)

    @card
    @model(load=["corpus", "data"])
    @step
    def train_tokenizer(self):
        """Train the BBPE tokenizer(s), build one tokenizer per CPT arm, measure fertility."""
        from azllm.data.layout import PreparedData
        from azllm.steps.cards import tokenizer_card
        from azllm.steps.step import begin_step, save_dir
        from azllm.tokenizer.stage import run_tokenizer_stage

        cfg = begin_step(self.config)
        data = PreparedData(data_dir=Path(current.model.loaded["data"]),
                            corpus_dir=Path(current.model.loaded["corpus"]))
        with save_dir("tokenizers") as out:
            result = run_tokenizer_stage(cfg.tokenizer, base_tokenizer=cfg.model.tokenizer_name,
                                         arms=cfg.cpt.arms, data=data, out_dir=out)
            self.fertility = result.table
            self.tokenizers = {arm: current.model.save(str(path), label=f"tokenizer_{arm}", storage_format="files")
                               for arm, path in result.arm_tokenizers.items()}
            current.card.extend(tokenizer_card(result.table))
        self.arms = list(cfg.cpt.arms)
        self.next(self.pack_arm, foreach="arms")

    @model(load=["corpus"])
    @step
    def pack_arm(self):
        """One CPT arm, on CPU: tokenize and pack the corpus once; phase 1 then runs on as many
        nodes as the compute profile gives it, each loading only these blocks."""
        from azllm.compute.distributed import num_nodes
        from azllm.data.layout import PreparedData
        from azllm.steps.step import begin_step
        from azllm.train.arms import pack_arm_corpus

        cfg = begin_step(self.config)
        self.arm = self.input
        corpus = pack_arm_corpus(cfg, tokenizer_dir=Path(current.model.load(self.tokenizers[self.arm])),
                                 data=PreparedData(corpus_dir=Path(current.model.loaded["corpus"])))
        self.pack_stats = corpus.stats()
        self.packed = current.model.save(str(corpus.directory), label=f"packed_{self.arm}", storage_format="files")
        self.next(self.cpt_embeddings, num_parallel=num_nodes(cfg.compute, "cpt_embeddings"))

    @card(refresh_interval=10)
    @model(load=["packed"])
    @checkpoint(load_policy="eager")
    @parallel
    @step
    def cpt_embeddings(self):
        """Phase 1: adapt the vocabulary (FVT init) and train the embeddings only."""
        from dataclasses import asdict

        from azllm.compute.distributed import checkpoint_stores, torchrun_layout
        from azllm.steps.artifacts import live_phase_dir, store_phase
        from azllm.steps.cards import cpt_card
        from azllm.steps.step import begin_step
        from azllm.train.arms import load_arm_corpus, train_embeddings_phase
        from azllm.train.checkpointing import loaded_checkpoint_for_this_run

        cfg = begin_step(self.config)
        layout = torchrun_layout(cfg.compute, "cpt_embeddings")
        with live_phase_dir(f"cpt-embeddings-{self.arm}", max_steps=cfg.cpt.embeddings.max_steps,
                            title=f"{self.arm}: phase 1") as out:
            result = train_embeddings_phase(cfg, arm=self.arm,
                                            tokenizer_dir=Path(current.model.load(self.tokenizers[self.arm])),
                                            corpus=load_arm_corpus(Path(current.model.loaded["packed"]),
                                                                   self.pack_stats), out_dir=out,
                                            resume_from=loaded_checkpoint_for_this_run(), layout=layout,
                                            **checkpoint_stores(layout, "cpt_embeddings", self.arm))
            if layout.is_main_node:  # node 0 exports the model; the other nodes only trained their shards
                self.embeddings_metrics, self.embeddings_model, self.embeddings_tensorboard = store_phase(
                    result, f"cpt_embeddings_{self.arm}")
        self.cpt_layout = asdict(layout)  # nproc_per_node, nnodes, node_rank, master_addr, master_port
        current.card.extend(cpt_card(result.metrics, arm=self.arm, phase="embeddings", node_rank=layout.node_rank))
        self.next(self.join_embeddings)

    @step
    def join_embeddings(self, inputs):
        """Gather phase 1's nodes: node 0 holds the model."""
        from azllm.steps.step import begin_step

        begin_step(self.config)
        self.merge_artifacts(inputs, exclude=["cpt_layout"])
        self.next(self.start_full)

    @step
    def start_full(self):
        """Phase 2 runs on as many nodes as the compute profile gives it."""
        from azllm.compute.distributed import num_nodes
        from azllm.steps.step import begin_step

        cfg = begin_step(self.config)
        self.next(self.cpt_full, num_parallel=num_nodes(cfg.compute, "cpt_full"))

    @card(refresh_interval=10)
    @model(load=["packed", "embeddings_model"])
    @checkpoint(load_policy="eager")
    @parallel
    @step
    def cpt_full(self):
        """Phase 2: all parameters at a lower learning rate."""
        from dataclasses import asdict

        from azllm.compute.distributed import checkpoint_stores, torchrun_layout
        from azllm.steps.artifacts import live_phase_dir, store_phase
        from azllm.steps.cards import cpt_card
        from azllm.steps.step import begin_step
        from azllm.train.arms import load_arm_corpus, train_full_phase
        from azllm.train.checkpointing import loaded_checkpoint_for_this_run

        cfg = begin_step(self.config)
        layout = torchrun_layout(cfg.compute, "cpt_full")
        with live_phase_dir(f"cpt-full-{self.arm}", max_steps=cfg.cpt.full.max_steps,
                            title=f"{self.arm}: phase 2") as out:
            result = train_full_phase(cfg, init_dir=Path(current.model.loaded["embeddings_model"]),
                                      corpus=load_arm_corpus(Path(current.model.loaded["packed"]), self.pack_stats),
                                      out_dir=out,
                                      resume_from=loaded_checkpoint_for_this_run(), layout=layout,
                                      **checkpoint_stores(layout, "cpt_full", self.arm))
            if layout.is_main_node:
                self.full_metrics, self.full_model, self.full_tensorboard = store_phase(result, f"cpt_full_{self.arm}")
        self.cpt_layout = asdict(layout)  # nproc_per_node, nnodes, node_rank, master_addr, master_port
        current.card.extend(cpt_card(result.metrics, arm=self.arm, phase="full", node_rank=layout.node_rank))
        self.next(self.join_full)

    @step
    def join_full(self, inputs):
        """Gather phase 2's nodes: node 0's model and metrics stand for the arm."""
        from azllm.steps.step import begin_step

        begin_step(self.config)
        self.cpt_layouts = sorted((inp.cpt_layout for inp in inputs), key=lambda lay: lay["node_rank"])
        self.merge_artifacts(inputs, exclude=["cpt_layout"])
        self.next(self.join_cpt)

    @card
    @model
    @step
    def join_cpt(self, inputs):
        """Bits per byte of the base model and of every arm on the same bytes; choose the arm."""
        from azllm.data.layout import PreparedData
        from azllm.eval.compare import compare_arms
        from azllm.steps.cards import arms_card
        from azllm.steps.step import begin_step
        from azllm.tokenizer.load import check_model_tokenizer

        cfg = begin_step(self.config)
        self.merge_artifacts(inputs, include=["data", "data_stats", "tokenizers", "fertility", "environment_info"])
        self.cpt_models = {inp.arm: inp.full_model for inp in inputs}
        self.cpt_layouts = {inp.arm: inp.cpt_layouts for inp in inputs}
        self.cpt_metrics = {inp.arm: {"embeddings": inp.embeddings_metrics, "full": inp.full_metrics}
                            for inp in inputs}
        arm_models = {arm: Path(current.model.load(ref)) for arm, ref in self.cpt_models.items()}
        for arm, model_dir in arm_models.items():  # from here on a model directory is its own tokenizer
            check_model_tokenizer(model_dir, Path(current.model.load(self.tokenizers[arm])), what=f"arm {arm!r}")
        comparison = compare_arms(cfg, arm_models=arm_models,
                                  data=PreparedData(data_dir=Path(current.model.load(self.data))))
        self.arm_bpb = comparison.bpb
        self.arm_token_stats = comparison.token_stats
        self.arm_task_scores = comparison.task_scores  # [eval] tasks of base and every arm (lm-eval)
        self.chosen_arm = comparison.chosen_arm
        current.card.extend(arms_card(comparison, self.cpt_metrics))
        self.next(self.sft_lora)

    @card(refresh_interval=10)
    @model(load=["data"])
    @checkpoint(load_policy="eager")
    @step
    def sft_lora(self):
        """LoRA SFT of the chosen arm into a chat assistant, loss on assistant tokens only."""
        from azllm.data.layout import PreparedData
        from azllm.steps.artifacts import store_tensorboard, trainer_checkpoints
        from azllm.steps.cards import sft_card
        from azllm.steps.step import begin_step, save_dir
        from azllm.train.sft import run_sft

        cfg = begin_step(self.config)
        with save_dir("sft") as out:
            result = run_sft(cfg.sft, model_dir=Path(current.model.load(self.cpt_models[self.chosen_arm])),
                             data=PreparedData(data_dir=Path(current.model.loaded["data"])), out_dir=out,
                             **trainer_checkpoints("sft"))
            self.sft_metrics = result.metrics
            self.sft_adapter = current.model.save(str(result.adapter_dir), label="sft_adapter",
                                                  storage_format="files")
            self.sft_tensorboard = store_tensorboard(out / "runs", "sft_tensorboard")
        current.card.extend(sft_card(result.metrics))
        self.next(self.preference)

    @card(refresh_interval=10)
    @model(load=["data"])
    @checkpoint(load_policy="eager")
    @step
    def preference(self):
        """Optional: DPO or GRPO on the SFT adapter ([preference] method); `none` passes through, storing nothing."""
        from azllm.data.layout import PreparedData
        from azllm.steps.artifacts import store_tensorboard, trainer_checkpoints
        from azllm.steps.cards import preference_card
        from azllm.steps.step import begin_step, save_dir
        from azllm.train.preference import run_preference

        cfg = begin_step(self.config)
        if cfg.preference.method != "none":
            with save_dir("preference") as out:
                result = run_preference(cfg.preference,
                                        model_dir=Path(current.model.load(self.cpt_models[self.chosen_arm])),
                                        adapter_dir=Path(current.model.load(self.sft_adapter)),
                                        data=PreparedData(data_dir=Path(current.model.loaded["data"])),
                                        out_dir=out, **trainer_checkpoints("preference"))
                self.preference_metrics = result.metrics
                self.preference_adapter = current.model.save(str(result.adapter_dir), label="preference_adapter",
                                                             storage_format="files")
                self.preference_pairs = (current.model.save(str(result.pairs_path.parent), label="preference_pairs",
                                                            storage_format="files") if result.pairs_path else None)
                self.preference_tensorboard = store_tensorboard(out / "runs", "preference_tensorboard")
            current.card.extend(preference_card(result.metrics, result.pairs.pairs[:5] if result.pairs else None))
        self.next(self.evaluate)

    @card
    @model(load=["data"])
    @step
    def evaluate(self):
        """Base vs CPT vs SFT (vs preference) side by side: BPB, generations, repetition, chrF, assistant loss."""
        from azllm.data.layout import PreparedData
        from azllm.eval.pipeline import evaluate_run
        from azllm.steps.artifacts import load_optional
        from azllm.steps.cards import eval_card
        from azllm.steps.step import begin_step, save_dir

        cfg = begin_step(self.config)
        with save_dir("eval") as out:
            report = evaluate_run(cfg, cpt_dir=Path(current.model.load(self.cpt_models[self.chosen_arm])),
                                  adapter_dir=Path(current.model.load(self.sft_adapter)),
                                  data=PreparedData(data_dir=Path(current.model.loaded["data"])), out_dir=out,
                                  preference_adapter_dir=load_optional(self, "preference_adapter"))
            self.metrics = report.metrics
            self.generations = report.generations
            self.task_scores = report.task_scores  # [eval] tasks of base, CPT, SFT (lm-eval)
            current.card.extend(eval_card(report))
        self.next(self.end)

    @card
    @model
    @step
    def end(self):
        """Export the chosen arm (its last adapter merged, model card) as a model reference, tag the run, summarise."""
        from azllm.report.summary import RunSummary
        from azllm.steps.cards import summary_card
        from azllm.steps.end import export_run_model, print_summary
        from azllm.steps.step import begin_step

        cfg = begin_step(self.config)
        summary = RunSummary.from_artifacts(self, config=cfg.to_dict(), complete=True)
        self.export_model = export_run_model(summary)
        current.card.extend(summary_card(summary, run_id=current.run_id, exported=True))
        print_summary(summary)


if __name__ == "__main__":
    AzLLMFlow()

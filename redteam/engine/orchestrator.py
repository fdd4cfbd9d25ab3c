"""One audit, in one direction: models -> inputs (read, detect, embed the gallery) -> methods (declared,
identified, fitted) -> one pass over the images (anonymize or read, attack, embed) -> scoring -> verdict
-> examples. The library prints nothing: progress and log lines go to the callables the caller passes.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import replace
from functools import partial

from attacks import Applicability, Attack, MethodInfo
from attacks.hidden import HiddenContentAttack
from metrics.columns import QUALITY_COLUMNS
from metrics.perceptual import LPIPSMetric
from metrics.recognizers import Recognizer
from redteam.anonymizers import build_method
from redteam.cache import Cache
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.devices import resolve_device
from redteam.core.hub import no_downloads
from redteam.core.paths import default_cache_dir
from redteam.core.policy import load_policy
from redteam.core.provenance import environment
from redteam.core.results import AuditResult, ExampleFace, Leak, LogFn, MethodEvidence, ProgressFn, ResultRow, SkippedAttack
from redteam.engine import methods as method_stage
from redteam.engine.context import RunContext
from redteam.engine.executors import run_pass
from redteam.engine.inputs import Inputs, collect
from redteam.engine.leaks import ExtraFileAudit, extra_files, row_leaks
from redteam.engine.models import Models, load_models
from redteam.engine.probe_cache import resolve_example
from redteam.engine.probes import Pass
from redteam.engine.scoring import impostor_distances, method_rows, outcomes
from redteam.engine.verdict import method_verdicts, metric_verdicts
from redteam.engine.warmup import run_pool, warm_fits, warm_inputs
from redteam.engine.work import MethodWork
from redteam.engine.worker_pool import WorkerPool
from redteam.faces import FaceDetector


class AuditRun:
    """One audit. Construct with a frozen config, then call `run()`; every piece of state is per run."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        log: LogFn | None = None,
        progress: ProgressFn | None = None,
        recognizers: dict[str, Recognizer] | None = None,
        lpips_metric: LPIPSMetric | None = None,
    ) -> None:
        from attacks import ATTACKS
        from metrics.recognizers import RECOGNIZERS

        device = resolve_device(config.device)
        self._started = time.perf_counter()
        self.ctx = RunContext(
            config=config,
            policy=load_policy(config.policy, tuple(RECOGNIZERS), builtin=config.builtin_policy, known_attacks=tuple(ATTACKS)),
            device=device,
            cache=Cache(config.cache_dir if config.cache_dir is not None else default_cache_dir(), log=log),
            detector=FaceDetector(config.detector, device=device),
            log=log or (lambda message: None),
            progress=progress or (lambda stage, done, total: None),
        )
        self._injected_recognizers = recognizers
        self._injected_lpips = lpips_metric

    def run(self) -> AuditResult:
        """The audit, offline: models come from the local caches only (see `no_downloads`)."""
        with no_downloads():
            return self._run()

    def _run(self) -> AuditResult:
        self._started = time.perf_counter()
        with run_pool(self.ctx, injected=self._injected_recognizers is not None) as pool:
            return self._stages(pool)

    def _stages(self, pool: WorkerPool) -> AuditResult:
        ctx = self.ctx
        models = load_models(ctx, self._injected_recognizers, self._injected_lpips)
        methods = method_stage.resolve(ctx)
        if not models.recognizers:
            return self._result(models, [m.source for m in methods], (), {}, [], [])
        unknown = [m for m in methods if method_stage.needs_identification(ctx, m)]
        warm_inputs(ctx, pool, models.recognizers, unknown)
        inputs = collect(ctx, models.recognizers)
        warm_fits(ctx, pool, models.recognizers, unknown, inputs)
        identifications = {}
        works: list[MethodWork] = []
        skipped: list[SkippedAttack] = []
        attack_models: dict[str, dict[str, dict[str, str]]] = {}
        missing: dict[str, list[str]] = {}
        original_rels = [entry.rel for entry in ctx.listing(ctx.config.originals, "originals").entries]
        audited_images = sorted({face.image for face in inputs.audited})
        for method in methods:
            if method_stage.needs_identification(ctx, method):
                method, identifications[method.name] = method_stage.identify_observed(ctx, method, inputs.originals, inputs.paths)
            method_stage.fit(ctx, method, inputs.gallery.faces, inputs.paths)
            info = MethodInfo(
                method.name,
                method.reference,
                audited_hashes=frozenset(ctx.input_hashes.values()),
                audited_identities=frozenset(face.identity for face in inputs.audited if face.identity),
                attack_embeddings=True,  # scoring.method_rows ranks in an attack's own space (Attack.embedding_space)
            )
            runnable, missing[method.name] = self._applicable(method.name, info, models, skipped, attack_models)
            method_stage.unmatched_files(ctx, method.source, original_rels)
            hidden_reasons, carriers = method_stage.hidden_content_blockers(ctx, method.source, audited_images)
            missing[method.name] += hidden_reasons
            if carriers:  # what those files carry is audited too, like the visible pixels (naive tier)
                runnable.append(HiddenContentAttack().use_device(ctx.device))
            if inputs.unreadable:
                missing[method.name].append(
                    f"{len(inputs.unreadable)} original(s) could not be read, so the set was not audited in full: {', '.join(inputs.unreadable[:5])}"
                )
            works.append(MethodWork(method, info, runnable, hidden=frozenset(carriers)))
        executor = "processes" if ctx.config.executor == "local" and ctx.config.workers > 1 else ctx.config.executor
        run_pass(Pass(ctx, inputs, models, works), executor, ctx.config.workers, ctx.config.ray_address, pool if pool.workers else None)
        quality = tuple(QUALITY_COLUMNS)
        rows: list[ResultRow] = []
        evidence: dict[str, MethodEvidence] = {}
        leaks: list[Leak] = []
        extras = ExtraFileAudit(ctx, models.recognizers, inputs.gallery, inputs.audited, inputs.paths)
        for work in works:
            method_rows_ = method_rows(work, models.recognizers, inputs.gallery, quality)
            rows.extend(method_rows_)
            leaks += row_leaks(method_rows_, partial(self._published, work.method.source))
            for extra in extra_files(ctx, work.method, audited_images, inputs.duplicates):
                found, inspected = extras(work.method.name, extra)
                leaks += found
                if not inspected:
                    missing[work.method.name].append(f"{extra.label} is published beside the audited files but could not be read: it may show a face")
            evidence[work.method.name] = self._evidence(work, inputs, method_rows_, models, missing[work.method.name])
            ctx.log(f"{work.method.name}: {work.computed} attacked image results computed, {work.reused} reused from the cache")
        for leak in leaks:
            ctx.log(f"LEAK {leak.describe()}")
        result = self._result(models, [w.method.source for w in works], tuple(rows), evidence, skipped, works, inputs=inputs, leaks=tuple(leaks))
        baseline = {name: impostor_distances(name, recognizer, inputs.gallery) for name, recognizer in models.recognizers.items()}
        return replace(result, identifications=identifications, attack_models=attack_models, impostor_distances=baseline)

    def _published(self, source: MethodSource, method: str, image: str, attack: str) -> str:
        """What published an original's face under one method, as the leak findings name it."""
        if source.kind != "observed":
            return f"{source.name} as this audit applies it to {image}"
        path = method_stage.anonymized_path(self.ctx, source, image)
        where = str(path) if path is None or source.folder is None else f"{source.name}:{path.relative_to(source.folder).as_posix()}"
        return f"content hidden in {where}" if attack == HiddenContentAttack.name else where

    def _applicable(
        self, method: str, info: MethodInfo, models: Models, skipped: list[SkippedAttack], attack_models: dict[str, dict[str, dict[str, str]]]
    ) -> tuple[list[Attack], list[str]]:
        """The attacks that run against one method; the skipped ones with the reason; blockers for
        requested or required attacks whose model is missing; reasons for required ones that do not apply."""
        policy, runnable, missing = self.ctx.policy, [], []
        for attack in models.attacks:
            applicability = Applicability.of(attack.applicable(info))
            if applicability.ok:
                runnable.append(attack)
                provenance = attack.provenance(info)
                if provenance:
                    attack_models.setdefault(method, {})[attack.name] = provenance
                continue
            skipped.append(SkippedAttack(method, attack.name, applicability.reason))  # reported once per attack and reason
            if not models.block_if_model_missing(attack.name, applicability, policy.required_attacks) and attack.name in policy.required_attacks:
                missing.append(f"policy requires attack '{attack.name}', which does not apply: {applicability.reason}")
        selected = {a.name for a in models.attacks}
        missing += [
            f"policy requires attack '{name}', which this run did not select: add --attack {name}" for name in policy.required_attacks if name not in selected
        ]
        return runnable, missing

    @staticmethod
    def _evidence(work: MethodWork, inputs: Inputs, rows: list[ResultRow], models: Models, missing: list[str]) -> MethodEvidence:
        """What ran for one method: tiers, and how many audited faces each attack x recognizer covered."""
        covered: dict[tuple[str, str], set[str]] = {}
        for row in rows:
            covered.setdefault((row.attack, row.recognizer), set()).add(row.face_id)
        tiers = {attack.name: attack.tier.value for attack in work.attacks}
        for attack_name, faces in work.exempt.items():  # nothing left to restore there: the naive tier covers them
            for name in models.recognizers:
                covered.setdefault((attack_name, name), set()).update(faces)
        attacks_run = {attack for attack, _ in covered}
        coverage = {(attack, name): len(covered.get((attack, name), ())) for attack in attacks_run for name in models.recognizers}
        gaps = tuple(
            f"{len(set(ids))} face(s): {reason} ({', '.join(sorted(set(ids))[:3])}{', ...' if len(set(ids)) > 3 else ''})"
            for reason, ids in sorted(work.gaps.items())
        )
        return MethodEvidence(
            faces=len(inputs.audited),
            declared=work.info.is_known,
            tiers_run=frozenset(row.tier for row in rows),
            tiers_covered=frozenset(tiers[a] for a in work.exempt if a in tiers),
            coverage=coverage,
            gaps=gaps,
            missing=tuple(missing),
        )

    def _result(
        self,
        models: Models,
        sources: list,
        rows: tuple[ResultRow, ...],
        evidence: dict[str, MethodEvidence],
        skipped: list[SkippedAttack],
        works: list[MethodWork],
        inputs: Inputs | None = None,
        leaks: tuple[Leak, ...] = (),
    ) -> AuditResult:
        ctx = self.ctx
        verdicts = metric_verdicts(list(outcomes(rows)), ctx.policy)
        by_method = method_verdicts([s.name for s in sources], verdicts, ctx.policy, evidence, models.blockers, leaks)
        ctx.clock.seconds["total"] = time.perf_counter() - self._started
        cache_stats = dict(inputs.embedding_stats) if inputs is not None else {}
        for work in works:
            cache_stats[f"{work.method.name}_attack_results_reused"] = work.reused
            cache_stats[f"{work.method.name}_attack_results_computed"] = work.computed
        return AuditResult(
            config=ctx.config,
            policy=ctx.policy,
            rows=rows,
            metric_verdicts=tuple(verdicts),
            method_verdicts=tuple(by_method),
            issues=tuple(ctx.issues),
            conversions=dict(sorted(ctx.conversions.items())),
            faces=tuple(inputs.audited) if inputs is not None else (),
            gallery_size=len(inputs.gallery.faces) if inputs is not None else 0,
            methods=tuple(sources),
            recognizers=models.records(),
            unavailable=dict(models.unavailable),
            blockers=tuple(models.blockers),
            skipped_attacks=tuple(skipped),
            examples=tuple(example for work in works for example in _ranked_examples(ctx, work, rows, ctx.config.examples_per_method)),
            input_hashes=dict(sorted(ctx.input_hashes.items())),
            timings={k: round(v, 4) for k, v in ctx.clock.seconds.items()},
            attack_seconds={w.method.name: {a: round(t, 4) for a, t in w.attack_seconds.items()} for w in works},
            face_operators={w.method.name: {f: op.to_json() for f, op in sorted(w.face_operators.items())} for w in works if w.face_operators},
            attack_models={},
            cache_stats=cache_stats,
            identifications={},
            environment=environment(),
            quality_columns=tuple(QUALITY_COLUMNS),
            quality_headings={name: column.heading or name for name, column in QUALITY_COLUMNS.items()},
            method_stages={s.name: (build_method(s.spec).parameters_json if s.spec else []) for s in sources},
            leaks=leaks,
        )


def _ranked_examples(ctx: RunContext, work: MethodWork, rows: tuple[ResultRow, ...], count: int) -> list[ExampleFace]:
    """The kept faces, re-identified ones first (any clean attack, any recognizer), then the closest; their
    crops are read from the cache now, for these faces only."""
    if count <= 0:
        return []
    identified = {row.face_id for row in rows if row.method == work.method.name and (row.rank1 or row.verify)}
    kept = heapq.nlargest(len(work.examples), work.examples)
    kept.sort(key=lambda item: (item[2].face_id not in identified, -item[0]))
    return [resolve_example(ctx.cache, example, ctx.log) for _, _, example in kept[:count]]


def run_audit(config: AuditConfig, **kwargs: object) -> AuditResult:
    """Convenience wrapper: `AuditRun(config, **kwargs).run()`."""
    return AuditRun(config, **kwargs).run()  # type: ignore[arg-type]

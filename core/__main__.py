"""``python -m core ...``: the studio's steps, headless.

Exit codes, one per category of error (the table is ``core.errors.CATEGORIES``; the code names follow
MLflow's ``databricks_pb2`` error codes). A studio error prints a one-line reason on stderr, no traceback:

====  =======================  =====================================================================
exit  code                     meaning
====  =======================  =====================================================================
0                              success
1     INTERNAL_ERROR           a bug: stderr says "Unexpected error (...), recorded in the log as
                               <id> (<workspace>/logs/errors.log)"; the traceback is only in that log
2     INVALID_PARAMETER_VALUE  bad input: a file, value or choice that cannot be used as given
3     DRIFT_FOUND              ``drift`` and ``monitor``: it worked and a feature drifted significantly
                               (``monitor`` exits 4 when performance breaks its rule)
4     RESOURCE_DOES_NOT_EXIST  a table, model, version, alias or run that does not exist (``monitor``:
                               performance breaks its rule; its verdict is on stdout, an error's
                               reason only on stderr)
5     RESOURCE_ALREADY_EXISTS  already done: this file was scored with this version
                               (``labels``: this batch already has outcomes; --replace)
6     TEMPORARILY_UNAVAILABLE  the MLflow store cannot be reached
7     COULD_NOT_ACQUIRE_LOCK   another studio process is making the same change; try again
130   CANCELLED                cancelled (Ctrl-C)
====  =======================  =====================================================================

Whatever is printed or logged is redacted: a password in a URI reads ``***``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.errors import JobCancelled, StudioError, category_of, unexpected
from core.settings import harden_process, load_settings, redact


def _cmd_demo(args: argparse.Namespace) -> int:
    from core.demo import write_demo

    settings = load_settings()
    paths = write_demo(args.data_dir or settings.data_dir)
    print(json.dumps({"written": [str(p) for p in paths], "synthetic": True}))
    return 0


def _cmd_tables_list(args: argparse.Namespace) -> int:
    from core import tables

    store = tables.store(load_settings())
    print(json.dumps([r.to_dict() for r in store.list()], indent=2, ensure_ascii=False))
    return 0


def _cmd_tables_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core import tables
    from core.errors import BadInputError

    settings = load_settings()
    path = Path(args.file)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path and try again.")
    result = tables.store(settings).ingest(path, path.name, name=args.name)  # streamed from disk
    print(json.dumps({"created": result.created, **result.record.to_dict()}, indent=2, ensure_ascii=False))
    return 0


def _split(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _follow(settings, job, what: str, after: str = ""):
    """Wait for a training job, printing each new step on stderr; the finished job, or the exit code
    when it was cancelled (Ctrl-C: the job is cancelled too) or failed."""
    from core import jobs

    print(f"{what} job {job.job_id} started ({job.title})", file=sys.stderr, flush=True)
    last = None
    try:
        while not job.finished:
            job = jobs.wait(settings, job.job_id, timeout=1.0)
            step = job.step + (f" ({job.model})" if job.model else "")
            if step != last:
                print(f"[{job.elapsed:5.1f}s] {step}", file=sys.stderr, flush=True)
                last = step
    except KeyboardInterrupt:
        jobs.cancel(settings, job.job_id)
        jobs.wait(settings, job.job_id, timeout=30)
        print(f"error: {what} cancelled;{after}".rstrip(";"), file=sys.stderr)
        return 130
    if job.state != "succeeded":
        print(f"error: {redact(job.error or job.state)}" + (f";{after}" if after else ""), file=sys.stderr)
        return 1
    return job


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core import catalog, jobs, tables
    from core.errors import BadInputError
    from core.training import TrainingSpec, TrainingSummary, infer_task

    settings = load_settings()
    path = Path(args.data)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path given to --data.")
    store = tables.store(settings)
    record = store.ingest(path, path.name).record
    frame = store.load(record.table_id)
    if args.target not in frame.columns:
        raise BadInputError(f"The target column '{args.target}' is not in {path.name}. Columns: {', '.join(map(str, frame.columns[:30]))}.")
    task = catalog.check_task(args.task) if args.task else infer_task(frame[args.target])
    if args.alias and not args.register:
        raise BadInputError("--alias needs --register NAME: an alias names a version of a registered model.")
    spec = TrainingSpec(
        target=args.target, task=task, features=_split(args.features), algorithms=_split(args.algorithms) or (),
        params=catalog.parse_set_options(task, args.set or []), test_size=args.test_size, folds=args.folds,
        seed=args.seed, tune_iterations=args.tune, tune_metric=args.tune_metric, compare=args.compare,
        compare_budget_minutes=args.budget, register_name=args.register, register_alias=args.alias,
        inf_as_missing=args.inf_as_missing,
    )
    job = _follow(settings, jobs.submit_training(settings, spec, record.table_id), "training")
    if isinstance(job, int):
        return job
    result = TrainingSummary.from_dict(job.result or {})
    for m in result.models:  # the others were trained (and maybe registered): said, not only inside the JSON
        if m.status == "FAILED":
            print(f"warning: {m.error}", file=sys.stderr)
    print(json.dumps({
        "parent_run_id": result.parent_run_id,
        "models": [{"algorithm": m.algorithm, "run_id": m.run_id, "model_uri": m.model_uri, "metrics": m.metrics,
                    "status": m.status, "error": m.error} for m in result.models],
        "registered": result.registered.to_dict() if result.registered else None,
        "leaderboard": list(result.leaderboard) if result.leaderboard is not None else None,
    }, indent=2))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from core import registry

    settings = load_settings()
    if args.models_command == "list":
        out = [m.to_dict() for m in registry.list_models(settings)]
    elif args.models_command == "register":
        out = registry.register(settings, args.run_id, args.name, alias=args.alias).to_dict()
    elif args.models_command == "alias":
        out = registry.set_alias(settings, args.name, args.version, args.alias).to_dict()
    elif args.models_command == "trust":
        from core import integrity

        name, _, version = registry.parse_reference(args.reference)
        if version is None:
            from core.errors import BadInputError

            raise BadInputError("Name the version to vouch for: NAME/VERSION, for example kobe/3.")
        files = integrity.trust(settings, name, version)
        out = {"name": name, "version": version, "files_hashed": len(files)}
    elif args.models_command == "promote":
        out = registry.promote(settings, args.name, expected=args.expected).to_dict()
        rules = {v: registry.cutoff(settings, args.name, v) for v in (out["champion"], out["previous_champion"]) if v}
        new, old = rules.get(out["champion"]), rules.get(out["previous_champion"])
        if out["previous_champion"] and not registry.Cutoff.same_rule(new, old):
            named = registry.Cutoff.named
            print(f"note: the champion now predicts with {named(new)}; version {out['previous_champion']} predicted with "
                  f"{named(old)}. Set it with python -m core models threshold {args.name} {out['champion']} VALUE.",
                  file=sys.stderr)
    elif args.models_command == "threshold":  # the cut-off stored on a version
        from core.errors import BadInputError

        if args.clear == (args.value is not None):
            raise BadInputError("Give either a cut-off from 0 to 1 (for example: models threshold kobe 3 0.35) or --clear "
                                "to remove it, not both or neither.")
        if args.clear and args.positive:
            raise BadInputError("--positive names the class of a cut-off being set; --clear removes the cut-off and takes none.")
        out = registry.set_cutoff(settings, args.name, args.version, None if args.clear else args.value,
                                  positive=args.positive).to_dict()
        _say_stale_server(settings, args.name, args.version, out["to"])
    elif args.models_command == "compare":  # champion and challenger on the same labelled rows
        from core import retraining

        out = retraining.compare(settings, args.name).to_dict()
    else:  # show
        name, alias, version = registry.parse_reference(args.reference)
        if alias is None and version is None:
            out = registry.get_model(settings, name).to_dict()
        else:
            out = registry.resolve(settings, args.reference).to_dict()
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    return 0


def _say_stale_server(settings, name: str, version: int, now: dict | None) -> None:
    """On stderr, when the REST server this workspace started serves ``version`` of ``name`` and is
    up, but at another cut-off than the one stored now: it reads the cut-off when it starts."""
    from core import serving

    found = serving.other_cutoff(settings, name, version, now)
    if found is None or not serving.ping(found[0]):
        return
    where, running = found
    at = f"the cut-off {running['value']:.6g} for class {running['positive']}" if running else "the likelier class"
    print(f"note: the REST server at {where} still answers version {version} at {at}: it reads the cut-off when "
          "it starts. Restart it (stop it, then python -m core serve) to answer at the one stored now.", file=sys.stderr)


def _cmd_score(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from core import scoring

    settings = load_settings()
    destination = Path(args.output)
    if destination.suffix.lower() not in (".parquet", ".csv"):
        raise scoring.BadInputError(f"--output must end in .parquet or .csv; got '{destination.name}'.")
    from core.scoring.export import check_destination

    check_destination(destination, inputs=(Path(args.input),))
    planned = scoring.plan(settings, args.model, Path(args.input))
    earlier = planned.already_scored()
    if earlier is not None and not args.force:
        output = scoring.output_path(settings, earlier.run_id)
        if not output.is_file():
            raise scoring.BadInputError(f"{earlier} Its output is not in this workspace; use --force to score again.")
        scoring.export(output, destination)
        print(f"{earlier} Wrote that result to {destination}; --force scores again.", file=sys.stderr)
        print(json.dumps({"run_id": earlier.run_id, "already_scored": True, "output": str(destination),
                          "model": {"name": planned.model_name, "version": planned.model_version}}, indent=2))
        return 0
    report = scoring.run(settings, planned, force=args.force, batch_rows=args.batch_rows,
                         progress=lambda done, total: print(f"scored {done:,}" + (f" of {total:,}" if total else "") + " rows",
                                                            file=sys.stderr, flush=True))
    report = replace(report, exported=str(scoring.export(Path(report.output), destination)))
    if report.cutoff is not None:  # the labels were decided at the version's stored cut-off
        from core.registry import Cutoff

        print(f"cut-off: {Cutoff(**report.cutoff).sentence(planned.target)}", file=sys.stderr)
    if report.drift is not None:  # measured while scoring
        print(f"drift: {report.drift['status']} (worst feature {report.drift['worst_feature']})", file=sys.stderr)
    if report.estimate is not None:  # expected without labels
        from core import metrics
        from core.estimation import Estimate

        estimate = Estimate.from_dict(report.estimate)
        shown = ", ".join(f"{metrics.label(k)} {metrics.fmt(k, v)} ± {estimate.bands.get(k, float('nan')):.3f}"
                          for k, v in estimate.values.items())
        print(f"estimated without labels: {shown}", file=sys.stderr)
    for message in report.messages:
        print(f"note: {redact(message)}", file=sys.stderr)
    print(json.dumps(report.summary(), indent=2, default=str))
    return 0


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="NAME@ALIAS (e.g. kobe@champion) or NAME/VERSION")
    parser.add_argument("--input", required=True, help="parquet, CSV or Excel file with the model's columns")
    parser.add_argument("--rows", type=int, default=None,
                        help="explain the first N rows of the file (default 1,000); 0 means every row")
    parser.add_argument("--output", required=True,
                        help="where to write the contributions (.parquet or .csv): row_number (from 1), one column per "
                        "input, base_value and output")
    parser.add_argument("--class", dest="explain_class", default=None, metavar="CLASS",
                        help="a classifier: the class whose probability is explained (default: the last class of the "
                        "model, the positive one of a yes/no target)")


def _cmd_explain(args: argparse.Namespace) -> int:
    from core import explain

    return explain.command(args)


def _cmd_drift(args: argparse.Namespace) -> int:
    from core import monitoring
    from core.datasets import read_table_file

    settings = load_settings()
    frame = read_table_file(args.input).frame
    report = monitoring.file_drift(settings, args.model, frame)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        from core import drift

        # a column per value and p-value the table of statistics keeps (psi, ks_statistic, ks_pvalue, ...)
        columns = [attr for s in drift.STATISTICS.values() for _, attr, _ in s.columns()]
        table = report.table().reindex(columns=["feature", "kind", "status", *columns])
        print(table.round(4).to_string(index=False))
        s = report.summary
        print(f"\n{s['message']}")
        if report.prediction is not None and report.prediction.judged:
            shown = [f"{st.short} {st.of(report.prediction)[0]:.3f}" for st in drift.statistics_for(report.prediction.kind)
                     if st.prediction and st.attr]
            print(f"prediction drift: {', '.join(shown)}")
    return 3 if report.any_significant else 0


def _cmd_labels(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core import labels

    settings = load_settings()
    planned = labels.plan(settings, args.batch, Path(args.input), key=args.key, target=args.target)
    for message in planned.messages:
        print(f"note: {redact(message)}", file=sys.stderr)
    report = labels.attach(settings, planned, replace=args.replace)
    if report.replaced:
        print(f"note: replaced the batch's earlier outcomes ({planned.existing})", file=sys.stderr)
    print(json.dumps(report.summary(), indent=2, default=str))
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core import retraining, tables
    from core.errors import BadInputError
    from core.training import TrainingSummary

    settings = load_settings()
    source = args.data
    if source != retraining.TRAINING_PLUS_LABELLED:
        path = Path(source)
        store = tables.store(settings)
        if path.is_file():
            source = store.ingest(path, path.name).record.table_id
        elif not any(r.table_id == source for r in store.list()):
            raise BadInputError(f"--data '{source}' is neither a file nor a stored table id. Give a CSV, parquet or Excel file, "
                                f"a table id from python -m core tables list, or {retraining.TRAINING_PLUS_LABELLED}.")
    planned = retraining.plan(settings, args.model, source, alias=args.alias, with_labelled=args.with_labelled)
    print(planned.description, file=sys.stderr, flush=True)
    for note in planned.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    job = _follow(settings, retraining.submit(settings, planned), "retraining", " nothing was registered")
    if isinstance(job, int):
        return job
    result = TrainingSummary.from_dict(job.result or {})
    print(json.dumps({
        "job_id": job.job_id, "parent_run_id": result.parent_run_id, "plan": planned.to_dict(),
        "models": [{"algorithm": m.algorithm, "run_id": m.run_id, "metrics": m.metrics, "status": m.status, "error": m.error}
                   for m in result.models],
        "registered": result.registered.to_dict() if result.registered else None,
    }, indent=2, default=str))
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from core import health

    found = health.check(load_settings(), args.model, last=args.last)
    print(json.dumps(found.to_dict(), indent=2, default=str) if args.json else found.summary())
    return found.exit_code


def _cmd_serve(args: argparse.Namespace) -> int:
    from core import serving, tracking

    settings = load_settings()
    command, facts = serving.serve_command(settings, args.model, args.alias, args.port)
    serving.record_state(settings, facts)
    env = {**os.environ}
    if not settings.is_remote:
        tracking.client(settings)  # the store exists before the server reads it
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    # mlflow starts `uvicorn` by name: the virtual environment's bin must be on PATH even when the
    # studio runs as .venv/bin/python without activating it.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    print(f"serving {args.model}@{args.alias} (version {facts['version']}) on {facts['url']}", file=sys.stderr, flush=True)
    os.execve(command[0], command, env)
    return 0  # pragma: no cover


def _cmd_image(args: argparse.Namespace) -> int:
    from core import images

    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.studio:
        built = images.build_studio_image(tag=args.tag or "localhost/studio:latest", base=args.base, say=say)
    elif args.model:
        built = images.build_model_image(load_settings(), args.model, tag=args.tag, base=args.base, say=say)
    else:
        from core.errors import BadInputError

        raise BadInputError("Say what to build: --model NAME[@ALIAS] (a model served over REST) or --studio (the whole studio).")
    print(json.dumps(built.to_dict(), indent=2))
    return 0


def _cmd_mlflow_ui(args: argparse.Namespace) -> int:
    from core.tracking import mlflow_ui_command

    settings = load_settings()
    if settings.is_remote:
        print(f"The studio uses {settings.safe_tracking_uri}; open that server's own UI instead.")
        return 0
    command = mlflow_ui_command(settings, args.host, args.port)
    print(f"MLflow UI on http://{args.host}:{args.port} ({settings.describe_store()})", flush=True)
    os.execv(command[0], command)
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="The ML studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write the synthetic demo tables (development and production)")
    demo.add_argument("--data-dir", help="folder to write into (default: data/ or STUDIO_DATA_DIR)")
    demo.set_defaults(func=_cmd_demo)

    tables = sub.add_parser("tables", help="stored tables of the workspace")
    tables_sub = tables.add_subparsers(dest="tables_command", required=True)
    tables_sub.add_parser("list", help="list stored tables (JSON)").set_defaults(func=_cmd_tables_list)
    add = tables_sub.add_parser("add", help="store a CSV, parquet or Excel file")
    add.add_argument("file")
    add.add_argument("--name", help="display name (default: the file name)")
    add.set_defaults(func=_cmd_tables_add)

    t = sub.add_parser("train", help="train models on a table file; prints a JSON summary")
    t.add_argument("--data", required=True, help="CSV, parquet or Excel file (stored in the workspace)")
    t.add_argument("--target", required=True, help="the column to predict")
    t.add_argument("--task", choices=["classification", "regression"], help="default: inferred from the target")
    t.add_argument("--algorithms", help="comma-separated algorithm keys, e.g. lr,dt (default: lr,dt)")
    t.add_argument("--set", action="append", metavar="ALGO.PARAM=VALUE", help="a hyperparameter, e.g. dt.max_depth=5 (repeatable)")
    t.add_argument("--features", help="comma-separated feature columns (default: every usable column)")
    t.add_argument("--test-size", type=float, default=0.2)
    t.add_argument("--folds", type=int, default=5)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--tune", type=int, default=0, metavar="N", help="random-search tuning iterations per algorithm")
    t.add_argument("--tune-metric", help="metric to optimise when tuning or comparing (auc, f1, ...; rmse, mae, r2, ...)")
    t.add_argument("--compare", action="store_true", help="rank algorithms by CV (all of the task's if --algorithms is not given)")
    t.add_argument("--budget", type=float, metavar="MINUTES", help="time budget for --compare")
    t.add_argument("--register", metavar="NAME", help="register the best model under this name")
    t.add_argument("--alias", help="alias for the registered version, e.g. champion")
    t.add_argument("--inf-as-missing", action="store_true",
                   help="treat infinite values (inf, -inf) as missing: filled in in features, rows left out when in the target")
    t.set_defaults(func=_cmd_train)

    sc = sub.add_parser("score", help="score a file with a registered model; prints a JSON summary")
    sc.add_argument("--model", required=True, help="NAME@ALIAS (e.g. kobe@champion) or NAME/VERSION")
    sc.add_argument("--input", required=True, help="parquet, CSV or Excel file")
    sc.add_argument("--output", required=True, help="where to write the scored rows (.parquet or .csv)")
    sc.add_argument("--force", action="store_true", help="score again a file already scored with this version")
    sc.add_argument("--batch-rows", type=int, default=250_000, help="rows per batch (memory use)")
    sc.set_defaults(func=_cmd_score)

    ex = sub.add_parser("explain", help="why a model predicts what it does: each input column's contribution to each row's "
                        "prediction (SHAP values), written to a file; prints a JSON summary")
    _explain_arguments(ex)
    ex.set_defaults(func=_cmd_explain)
    dr = sub.add_parser("drift", help="drift of a file against a model's training data (exit 3 if any feature is significant)")
    dr.add_argument("--model", required=True, help="NAME@ALIAS or NAME/VERSION")
    dr.add_argument("--input", required=True, help="parquet, CSV or Excel file")
    dr.add_argument("--json", action="store_true", help="print the full report as JSON")
    dr.set_defaults(func=_cmd_drift)

    lb = sub.add_parser(
        "labels", help="attach the actual outcomes to a scored batch; prints a JSON summary (matched, metrics, comparison)",
        description="Join a file of actual outcomes onto a scored batch by a key column and record the batch's realized "
                    "metrics on its scoring run. The key is a column both files share (an id carried through scoring), or "
                    "row_number: each row's position in the scored file, from 1. Nothing is recorded when a check fails; "
                    "a batch that already has outcomes is refused (exit 5) unless --replace.")
    lb.add_argument("--batch", required=True, metavar="SCORING_RUN_ID", help="the scoring run of the batch (the Monitor page shows it)")
    lb.add_argument("--input", required=True, help="CSV, parquet or Excel file with the key and the outcome")
    lb.add_argument("--key", required=True, metavar="COLUMN", help="the column both files share, or row_number")
    lb.add_argument("--target", metavar="COLUMN", help="the outcome's column in the file (default: the training target's name)")
    lb.add_argument("--replace", action="store_true", help="replace the outcomes the batch already has")
    lb.set_defaults(func=_cmd_labels)

    rt = sub.add_parser(
        "retrain", help="retrain a model to a challenger (same algorithm, hyperparameters, features); prints a JSON summary",
        description="Retrain NAME@champion with its algorithm, hyperparameters, features and split on another table, as a "
                    "background training job, and register the result as a challenger (champion does not move). "
                    "--data training+labelled trains on the champion's training table plus the rows of every labelled "
                    "batch except the latest one, which stays out so that champion and challenger can be compared on it. "
                    "A cron line can call this on a schedule (the predictive strategy); `monitor` says when a rule breaks "
                    "(the reactive one).")
    rt.add_argument("--model", required=True, help="the version to retrain, e.g. kobe@champion")
    rt.add_argument("--data", required=True, metavar="FILE_OR_TABLE",
                    help="a CSV, parquet or Excel file (stored in the workspace), a stored table id, or training+labelled")
    rt.add_argument("--alias", default="challenger", help="alias of the new version (default: challenger)")
    rt.add_argument("--with-labelled", action="store_true",
                    help="add the rows of the model's labelled batches to the table (the latest batch held out)")
    rt.set_defaults(func=_cmd_retrain)

    mo = sub.add_parser(
        "monitor", help="the health of a model from its last scored batches (exit 0 healthy, 3 drift, 4 performance)",
        description="Summarise the model's last scored batches (any version): worst PSI, drift, realized and estimated "
                    "performance. The latest batch decides the exit code: 0 healthy, 3 a feature drifted significantly, "
                    "4 the realized or estimated AUC (classification) or RMSE (regression) fell further from its holdout "
                    "value than the performance rule allows (by default AUC 0.05 lower, RMSE 5% higher: performance_drop in the "
                    "workspace's monitoring thresholds; 4 wins over 3). A model with no scored batch yet says so and exits 0 (nothing to act "
                    "on); an unknown model exits 4 too (not found) with nothing on stdout, its reason on stderr.")
    mo.add_argument("--model", required=True, help="NAME@ALIAS (e.g. kobe@champion) or NAME/VERSION")
    mo.add_argument("--last", type=int, default=5, metavar="N", help="how many of the latest batches to show (default 5)")
    mo.add_argument("--json", action="store_true", help="print the full health as JSON")
    mo.set_defaults(func=_cmd_monitor)

    im = sub.add_parser("image", help="build a container image with podman: a model behind MLflow's scoring server, or the studio",
                        description="Build a container image with podman (containers/containers.conf). --model: the version's "
                                    "integrity-checked files in MLflow's model image, answering /ping and /invocations on port "
                                    "8080, labelled with the model's name, version and run id. --studio: the whole studio on "
                                    "port 8501, its workspace on the volume /workspace. The image is tagged only when the build "
                                    "succeeded; its name and id are printed as JSON.")
    im.add_argument("--model", metavar="NAME[@ALIAS]", help="the registered model (NAME alone: its champion; or NAME/VERSION)")
    im.add_argument("--studio", action="store_true", help="build the studio image instead of a model image")
    im.add_argument("--tag", help="image name (default localhost/studio-model-NAME:VERSION, or localhost/studio:latest)")
    im.add_argument("--base", help="base image (default python:3.11-slim; without a registry: make base-image, then "
                                   "--base localhost/studio-base:bookworm)")
    im.set_defaults(func=_cmd_image)

    sv = sub.add_parser("serve", help="serve a registered model over REST with mlflow models serve")
    sv.add_argument("--model", required=True, help="registered model name")
    sv.add_argument("--alias", default="champion")
    sv.add_argument("--port", type=int, default=5001)
    sv.set_defaults(func=_cmd_serve)

    models = sub.add_parser("models", help="the model registry (JSON output)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="every registered model with its versions").set_defaults(func=_cmd_models)
    reg = models_sub.add_parser("register", help="register a training run's model as a new version")
    reg.add_argument("run_id")
    reg.add_argument("name")
    reg.add_argument("--alias", help="also point this alias at the new version")
    reg.set_defaults(func=_cmd_models)
    alias = models_sub.add_parser("alias", help="point an alias (champion, challenger, ...) at a version")
    alias.add_argument("name")
    alias.add_argument("version", type=int)
    alias.add_argument("alias")
    alias.set_defaults(func=_cmd_models)
    trust = models_sub.add_parser("trust", help="vouch for the files of a version logged before the studio kept their hashes")
    trust.add_argument("reference", help="NAME/VERSION")
    trust.set_defaults(func=_cmd_models)
    promote = models_sub.add_parser("promote", help="make the challenger the champion")
    promote.add_argument("name")
    promote.add_argument("--expected", type=int, metavar="VERSION",
                         help="refuse unless the challenger is still this version (the one you compared)")
    promote.set_defaults(func=_cmd_models)
    threshold = models_sub.add_parser(
        "threshold", help="store the cut-off of a version (two-class models with probabilities), or --clear it",
        description="A row is predicted as the positive class when its probability of that class is at or above the "
                    "cut-off, else as the other class; core score, the Predict page and REST use it. Without a cut-off "
                    "the likelier class is predicted. Who changed it and when is kept in the model's history. Prints the "
                    "cut-off before and after as JSON.")
    threshold.add_argument("name")
    threshold.add_argument("version", type=int)
    threshold.add_argument("value", nargs="?", help="the cut-off, a number from 0 to 1")
    threshold.add_argument("--positive", metavar="CLASS", help="the positive class (default: the last class, such as 1)")
    threshold.add_argument("--clear", action="store_true", help="remove the cut-off: the likelier class is predicted again")
    threshold.set_defaults(func=_cmd_models)
    compare = models_sub.add_parser("compare", help="champion and challenger scored on the same rows: the latest batch with "
                                                    "outcomes (held out of a training+labelled retraining)")
    compare.add_argument("name")
    compare.set_defaults(func=_cmd_models)
    show = models_sub.add_parser("show", help="a model (NAME), or one version (NAME@ALIAS or NAME/VERSION)")
    show.add_argument("reference")
    show.set_defaults(func=_cmd_models)

    ui = sub.add_parser("mlflow-ui", help="open the MLflow UI on the studio's embedded store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_cmd_mlflow_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    harden_process()  # files private to the user (umask 077), the workspace 0700, logs redacted
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StudioError as exc:  # its category's exit code (core.errors.CATEGORIES) and its one-line reason
        print(f"error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, JobCancelled) as exc:
        print("error: cancelled", file=sys.stderr)
        return category_of(exc).exit_code
    except Exception as exc:  # a bug, never re-worded as bad input: its traceback goes to the log only
        command = " ".join(filter(None, (args.command, getattr(args, f"{args.command}_command", None))))
        print(f"error: {unexpected(exc, f'running python -m core {command}')}", file=sys.stderr)
        return category_of(exc).exit_code


if __name__ == "__main__":
    sys.exit(main())

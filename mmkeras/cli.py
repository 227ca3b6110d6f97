"""The `mmkeras` command line."""

import argparse
import logging
import os
import sys
import threading

QUICKSTART_DATASETS = ("quickstart", "avmnist", "emoji")
# The real datasets `mmkeras data build` writes (`mmkeras.datasets.build_<name>`).
BUILT_DATASETS = ("avmnist", "emoji", "flickr8k", "ham10000", "easy_vqa")
# Its options, each passed to the builder only when given (and only if it takes it).
BUILD_OPTIONS = ("task", "language", "fraction", "image_size", "shortcut", "seed")


def _load_spec(path):
    from mmkeras.spec import Spec

    return Spec.from_yaml(path)


def cmd_quickstart(args):
    from mmkeras.datasets import DATA_ENV
    from mmkeras.quickstart import run_quickstart

    return run_quickstart(
        args.dataset or ("avmnist" if os.environ.get(DATA_ENV) else "quickstart"),
        args.output_dir,
        args.saved_models,
        rows=args.rows,
        epochs=args.epochs,
        seed=args.seed,
        data_only=args.data_only,
    )


def cmd_train(args):
    from mmkeras.training import train
    from mmkeras.training.run import summarize

    spec = _load_spec(args.spec)
    if args.epochs:
        spec.train.epochs = args.epochs
    if args.data_service:
        from mmkeras.spec.data_service import DataServiceSpec

        spec.data.service = DataServiceSpec(args.data_service)
    output_dir = args.output_dir or os.path.join("runs", os.path.splitext(os.path.basename(args.spec))[0])
    verbose = 1 if sys.stdout.isatty() else 2
    if args.seeds > 1:
        from mmkeras.training.seeds import train_seeds

        result = train_seeds(spec, output_dir, args.seeds, overwrite=args.overwrite, verbose=verbose)
        print(f"Run folders: {', '.join(result.runs.values())}")
        print(f"Validation over {args.seeds} seeds (mean ± standard deviation, min to max):")
        for name, values in result.summary.items():
            marker = "  <- headline" if name == result.headline else ""
            print(
                f"  {name:<18} {values['mean']:.4f} ± {values['std']:.4f}   "
                f"({values['min']:.4f} to {values['max']:.4f}){marker}"
            )
        print(f"Summary: {result.path}")
        return 0
    result = train(spec, output_dir, overwrite=args.overwrite, verbose=verbose)
    print(f"Run folder: {output_dir}")
    print(f"Validation: {summarize(result.metrics)}")
    if result.switched_off:
        print(f"Switched off in training, the fused model ignores: {', '.join(result.switched_off)}")
    if result.fusion_check and result.fusion_check["message"]:
        print(f"Warning: {result.fusion_check['message']}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(output_dir, 'logs')}")
    return 0


def cmd_evaluate(args):
    from mmkeras.evaluation import evaluate_run

    report = evaluate_run(
        args.run_dir,
        data=args.data,
        split=args.split,
        output_dir=args.output_dir,
        baselines=not args.no_baselines,
        by=tuple(args.by or ()),
    )
    for name, value in report.items():
        if isinstance(value, float):
            print(f"{name:<18} {value:.4f}")
    if "modality_ablation" in report:
        print("Modality ablation:")
        for name, values in report["modality_ablation"].items():
            print(f"  {name:<24} " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    if report.get("switched_off"):
        print(f"Switched off in training, the fused model ignores: {', '.join(report['switched_off'])}")
    if "unimodal_heads" in report:
        print("Each modality's own head:")
        for name, values in report["unimodal_heads"].items():
            print(f"  {name:<24} " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        if report["fusion_check"]["message"]:
            print(f"Warning: {report['fusion_check']['message']}")
    for column, groups in report.get("by", {}).items():
        print(f"By {column}:")
        metric = report["headline"]
        for value, scores in groups.items():
            print(f"  {value:<24} {metric} {scores[metric]:.4f}  ({scores['rows']} rows)")
    if "baselines" in report:
        print("Baselines on the same split (the model's lead in brackets):")
        metric = report["headline"]
        for name, scores in report["baselines"].items():
            print(f"  {name:<34} {metric} {scores[metric]:.4f}  ({report['above_baselines'][name]:+.4f})")
    print(f"Metrics and plots: {report['output_dir']}")
    return 0


def cmd_predict(args):
    from mmkeras.evaluation import predict_run

    output = predict_run(args.run_dir, args.data, args.output)
    print(f"Predictions: {output}")
    return 0


def cmd_explain(args):
    from mmkeras.explain import explain_run

    summary = explain_run(
        args.run_dir,
        args.data,
        output_dir=args.output_dir,
        max_rows=args.rows,
        steps=args.steps,
        label=args.label,
    )
    for record in summary["rows"]:
        shares = ", ".join(f"{name} {m['share']:.0%}" for name, m in record["modalities"].items())
        print(f"{record['row']}: {record['explained']} {record['value']:.3f}; {shares}")
    for row, reason in summary["skipped"].items():
        print(f"skipped {row}: {reason}")
    print(f"Pictures, explanations.html and attributions.json: {summary['output_dir']}")
    return 0


def cmd_tune(args):
    from mmkeras.tune import tune

    spec = _load_spec(args.spec)
    result = tune(
        spec, args.output_dir, max_trials=args.trials, overwrite=args.overwrite, verbose=args.verbose
    )
    print(f"{'trial':<8}{'status':<12}{result.objective:>12}  values")
    for row in result.trials:
        value = row[result.objective]
        shown = f"{value:.4f}" if value is not None else "-"
        values = ", ".join(
            f"{k}={v}" for k, v in row.items() if k not in ("trial", "status", result.objective)
        )
        print(f"{row['trial']:<8}{row['status']:<12}{shown:>12}  {values}")
    print(f"Best: trial {result.best_trial} ({result.direction} {result.objective})")
    print(f"Its spec: {result.best_spec}   train it: mmkeras train {result.best_spec}")
    print(f"TensorBoard's hparams dashboard: tensorboard --logdir {os.path.join(result.output_dir, 'logs')}")
    return 0


def cmd_data_service(args):
    from mmkeras.data.service import run_dispatcher, run_worker

    if args.role == "dispatcher":
        run_dispatcher(5050 if args.port is None else args.port, args.work_dir)
        return 0
    if not args.dispatcher:
        print("error: a worker needs --dispatcher HOST:PORT", file=sys.stderr)
        return 2
    run_worker(args.dispatcher, args.port or 0, args.worker_address)
    return 0


def cmd_data_check(args):
    from mmkeras.data import check_spec
    from mmkeras.data.check import print_check_report

    spec = _load_spec(args.spec)
    bad = print_check_report(check_spec(spec, progress=not args.quiet), spec)
    return 1 if bad and spec.data.on_bad_record == "error" else 0


def _flags(names):
    """Option names as the command line spells them: `image_size` is `--image-size`."""
    return ", ".join("--" + name.replace("_", "-") for name in names)


def cmd_data_build(args):
    import inspect

    from mmkeras import datasets
    from mmkeras.errors import MMKerasError

    builder = getattr(datasets, f"build_{args.dataset}")
    parameters = inspect.signature(builder).parameters
    options = {name: getattr(args, name) for name in BUILD_OPTIONS if getattr(args, name) is not None}
    takes = [name for name in BUILD_OPTIONS if name in parameters]
    unknown = [name for name in options if name not in takes]
    if unknown:
        raise MMKerasError(f"{args.dataset} takes no {_flags(unknown)}; its options: {_flags(takes)}.")
    if "data_root_dir" in parameters:
        options["data_root_dir"] = args.data_root
    elif args.data_root:
        raise MMKerasError(f"{args.dataset} is read from its package, not a data folder: drop --data-root.")
    try:
        spec = builder(args.output_dir, **options)
    except ValueError as error:  # a builder's own check of an option's value
        raise MMKerasError(f"{args.dataset}: {error}") from None
    spec_path = os.path.join(args.output_dir, "spec.yaml")
    target = spec.data.target
    print(f"Wrote the {args.dataset} manifests and {spec_path}")
    print(f"  features: {', '.join(f'{f.name} ({f.modality})' for f in spec.data.features)}")
    print(f"  target:   {f'{target.column} ({target.type})' if target else 'none (pairs to retrieve)'}")
    print(f"Train it:   mmkeras train {spec_path} --output-dir runs/{args.dataset}")
    return 0


def cmd_data_to_tfrecord(args):
    from mmkeras.data.convert import convert_spec_to_tfrecords

    spec_path, patterns = convert_spec_to_tfrecords(_load_spec(args.spec), args.output_dir, args.num_shards)
    for split, pattern in patterns.items():
        print(f"{split}: {pattern}")
    print(f"A spec that reads these files: {spec_path}")
    return 0


def cmd_export(args):
    from mmkeras.export import check_ops, export_run

    if args.check:
        offenders = check_ops(args.check)
        if offenders:
            print("Ops TF Serving does not have:\n  " + "\n  ".join(offenders))
            return 1
        print(f"{args.check}: every op is core TensorFlow or TensorFlow Text.")
        return 0
    if not args.run_dir or not args.base_dir:
        print("error: give RUN_DIR and --base-dir, or --check PATH", file=sys.stderr)
        return 2
    result = export_run(args.run_dir, args.base_dir, version=args.version, force=args.force, label=args.label)
    print(f"Exported version {result.version} (label `{result.label}`): {result.path}")
    print(
        f"Parity with the trained model on real validation rows: max difference {result.max_difference:.1e}"
    )
    print(f"Warmup requests: {result.warmup_requests}; TF Serving config: {result.models_config}")
    return 0


def cmd_serve(args):
    import signal

    from mmkeras.serving import ModelServer, ServingLimits
    from mmkeras.serving.server import load_batching

    batching, source = load_batching(args.path, args.batching_parameters_file, not args.no_batching)
    given = {"max_request_bytes": args.max_request_bytes, "max_image_pixels": args.max_image_pixels}
    limits = ServingLimits(**{name: value for name, value in given.items() if value is not None})
    server = ModelServer(
        args.path,
        host=args.host,
        rest_port=args.rest_port,
        grpc_port=args.grpc_port,
        batching=batching,
        limits=limits,
        poll_seconds=args.poll_seconds,
        model_name=args.model_name,
    )
    try:
        server.start()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Dynamic batching: {source}", flush=True)
    # One parseable line, so scripts (and tests) can find ports chosen with 0.
    print(
        f"serving rest=http://{args.host}:{server.rest_port} grpc={args.host}:{server.grpc_port}", flush=True
    )
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    print("stopping: in-flight requests finish first", flush=True)
    server.stop()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmkeras",
        description="Multimodal deep learning with Keras: text, images and audio "
        "from a CSV/JSONL manifest or TFRecords.",
        epilog="Exit codes: 0 done; 1 a check found problems (data check with bad rows under "
        "on_bad_record: error, export --check with ops TF Serving lacks); 2 the command stopped on "
        "an error, printed without a traceback with what to fix.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quickstart = commands.add_parser(
        "quickstart",
        help="build a dataset, train a fused model and each modality alone, compare",
        description="Build a dataset (the generated quickstart set of PNG pictures, "
        "WAV tones and captions whose label needs picture and sound together, "
        "or AV-MNIST when $MMKERAS_DATA points at the real data), check every "
        "row, train the fused model and one model per modality, and print "
        "their test accuracy side by side.",
    )
    quickstart.add_argument(
        "--dataset",
        choices=QUICKSTART_DATASETS,
        help="quickstart (generated), avmnist (degraded, from $MMKERAS_DATA) or "
        "emoji; default: avmnist when $MMKERAS_DATA is set, else quickstart",
    )
    quickstart.add_argument(
        "--data-only", action="store_true", help="stop after writing and checking the data"
    )
    quickstart.add_argument(
        "--output-dir", default="quickstart", help="where data and runs go (default quickstart/)"
    )
    quickstart.add_argument("--rows", type=int, default=600, help="rows of the generated dataset")
    quickstart.add_argument("--epochs", type=int, help="override the spec's epochs")
    quickstart.add_argument("--seed", type=int, default=0, help="random seed")
    quickstart.add_argument(
        "--saved-models",
        default="saved_models",
        help="where the fused model is exported (default saved_models/)",
    )
    quickstart.set_defaults(run=cmd_quickstart)

    train = commands.add_parser(
        "train",
        help="train the model a spec describes",
        description="Check the data, learn vocabularies and labels on the training "
        "split, train under the spec's tf.distribute strategy with TensorBoard "
        "logging and checkpoints, and write a run folder (spec, preprocessor, "
        "model.keras, checkpoints, history, metrics, logs). Run the same command "
        "again after a crash or kill and it resumes from the last finished epoch.",
    )
    train.add_argument("spec", help="the spec YAML file")
    train.add_argument("--output-dir", help="the run folder (default runs/SPEC_NAME)")
    train.add_argument("--epochs", type=int, help="override train.epochs")
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in the folder")
    train.add_argument(
        "--data-service",
        metavar="HOST:PORT",
        help="decode and preprocess the training split on the tf.data service workers of this "
        "dispatcher (mmkeras data-service); overrides data.service",
    )
    train.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train N times (seeds train.seed, train.seed + 1, ...) into OUTPUT_DIR/seed-SEED and "
        "report the mean and spread of the task's headline metric (e.g. balanced_accuracy) and of each "
        "validation metric, to tell a real difference from noise",
    )
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="metrics, plots and a modality ablation for a run",
        description="Evaluate a run folder on its test split (or validation, or "
        "--data): metrics for the target type (per-class precision/recall/F1 "
        "and confusion matrix; ROC and precision-recall for binary; MAE/RMSE "
        "for numeric) as JSON and PNG, and the same metric with each modality "
        "masked in turn, and linear baselines trained on the same training split "
        "(the training prior, TF-IDF of each text, downsampled pixels of each "
        "image, mel statistics of each audio) with the model's lead over each; "
        "recall@1/5/10 both ways for a retrieval model.",
    )
    evaluate.add_argument("run_dir", help="a folder written by mmkeras train")
    evaluate.add_argument("--data", help="a manifest to evaluate on instead of the spec's split")
    evaluate.add_argument(
        "--split", default="test", choices=("train", "validation", "test"), help="the spec's split"
    )
    evaluate.add_argument("--output-dir", help="where to write (default RUN/evaluation/SPLIT)")
    evaluate.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the linear baselines (constant, TF-IDF, pixels, mel statistics) trained for comparison",
    )
    evaluate.add_argument(
        "--by",
        action="append",
        metavar="COLUMN",
        help="also score the rows of each value of this manifest column apart (a question type, "
        "a site, a device); repeat for several columns",
    )
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="add predictions to the rows of a manifest",
        description="Write the rows of a CSV/JSONL manifest with the run's "
        "predictions (label and probability, per-class probabilities, or the "
        "value) added; unreadable rows get an `error` column instead.",
    )
    predict.add_argument("run_dir", help="a folder written by mmkeras train")
    predict.add_argument("--data", required=True, help="the manifest to predict")
    predict.add_argument("--output", help="the CSV to write (default DATA.predictions.csv)")
    predict.set_defaults(run=cmd_predict)

    explain = commands.add_parser(
        "explain",
        help="which modality, words, pixels and columns made each prediction",
        description="Integrated gradients for the first rows of a manifest: the explained output "
        "(the predicted class's probability, or --label's, or the predicted number) is attributed "
        "to every word, pixel, spectrogram cell and record column, all modalities at once, against "
        "baselines that carry nothing (no words, a black picture, silence, each record column at "
        "its training mean). The attributions add up to the output minus its value on the "
        "baselines; points are added where the path is steep until they do within 2%. Writes a "
        "picture per row, explanations.html (the words highlighted) and attributions.json, and "
        "shows the pictures in TensorBoard (RUN/logs/explain).",
    )
    explain.add_argument("run_dir", help="a folder written by mmkeras train (classifier or regressor)")
    explain.add_argument("--data", required=True, help="a CSV/JSONL manifest with the rows to explain")
    explain.add_argument("--rows", type=int, default=16, help="the first N readable rows (default 16)")
    explain.add_argument("--steps", type=int, default=64, help="path steps to start from (default 64)")
    explain.add_argument("--label", help="explain this class's probability instead of the predicted class's")
    explain.add_argument("--output-dir", help="where to write (default RUN/explanations)")
    explain.set_defaults(run=cmd_explain)

    service = commands.add_parser(
        "data-service",
        help="run a tf.data service dispatcher or worker for training input pipelines",
        description="Move the training split's reading, decoding and preprocessing off the trainer: "
        "start one dispatcher and any number of workers, then train with `data.service: HOST:PORT` "
        "in the spec (or `mmkeras train --data-service HOST:PORT`). Workers read the manifest's "
        "files by the trainer's paths, so they need the same data. Runs until killed.",
    )
    service.add_argument(
        "role",
        choices=("dispatcher", "worker"),
        help="dispatcher (one per cluster: hands out the work) or worker (as many as the input needs)",
    )
    service.add_argument(
        "--port",
        type=int,
        help="this server's port (default 5050 for the dispatcher, any free one for a worker)",
    )
    service.add_argument("--dispatcher", help="worker: the dispatcher's HOST:PORT")
    service.add_argument(
        "--work-dir", help="dispatcher: journal its state here, to pick up its jobs again after a restart"
    )
    service.add_argument(
        "--worker-address", help="worker: the HOST:PORT trainers reach it by, if not this machine's name"
    )
    service.set_defaults(run=cmd_data_service)

    tune = commands.add_parser(
        "tune",
        help="search the spec's tune: space with KerasTuner, each trial a run",
        description="Search the hyperparameters the spec's `tune:` section names (dotted spec "
        "paths with a choice or a range) by Bayesian optimisation, Hyperband or random search. "
        "Every value is checked against the spec before any trial runs; the first trial trains "
        "the spec's own values. Each trial is a run folder (OUTPUT_DIR/trial_NN); a killed search "
        "resumes when run again. Writes trials.csv, TensorBoard's hparams dashboard "
        "(OUTPUT_DIR/logs) and best_spec.yaml, ready for mmkeras train.",
    )
    tune.add_argument("spec", help="a spec YAML file with a tune: section")
    tune.add_argument("--output-dir", required=True, help="the search folder")
    tune.add_argument("--trials", type=int, help="at most N trials (default tune.max_trials)")
    tune.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    tune.add_argument("--verbose", type=int, default=0, help="Keras's verbosity per trial (default 0)")
    tune.set_defaults(run=cmd_tune)

    export = commands.add_parser(
        "export",
        help="write a SavedModel for TF Serving (raw text and encoded bytes in)",
        description="Export a run as BASE_DIR/<version>/ in TF Serving's layout: "
        "signatures serving_default (raw text, encoded image/audio bytes), "
        "preprocessed and embed. The next version is chosen automatically; it "
        "is written beside the base path, its ops are checked against what TF "
        "Serving links, a fresh process must reproduce the trained model's "
        "predictions on real validation rows to 1e-5, and only then is it "
        "renamed into place. --check PATH runs the op check on any SavedModel.",
    )
    export.add_argument("run_dir", nargs="?", help="a folder written by mmkeras train")
    export.add_argument("--base-dir", help="the model's folder, e.g. saved_models/NAME")
    export.add_argument("--version", type=int, help="the version number (default: the next one)")
    export.add_argument("--force", action="store_true", help="replace an existing version")
    export.add_argument(
        "--label", help="version label in models.config (default: stable for the first version, then canary)"
    )
    export.add_argument("--check", metavar="PATH", help="only check the ops of the SavedModel at PATH")
    export.set_defaults(run=cmd_export)

    serve = commands.add_parser(
        "serve",
        help="serve exported models over TF Serving's REST and gRPC APIs",
        description="Serve PATH, a model folder written by mmkeras export "
        "(its newest version) or a models.config (every model in it, with "
        "its version policy and labels), over TF Serving's REST API "
        "(/v1/models/NAME[:predict|/metadata]) and gRPC PredictionService, so "
        "clients written for TF Serving work unchanged. New versions are "
        "loaded, warmed up and switched to without a restart; concurrent "
        "requests are batched. It binds 127.0.0.1 unless --host says "
        "otherwise. For production, run the tensorflow/serving image on the "
        "same folder (see the README).",
    )
    serve.add_argument("path", help="saved_models/NAME, or saved_models/models.config")
    serve.add_argument(
        "--rest-port", type=int, default=8501, help="REST port (default 8501; 0 picks a free one)"
    )
    serve.add_argument(
        "--grpc-port", type=int, default=8500, help="gRPC port (default 8500; 0 picks a free one)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)"
    )
    serve.add_argument("--model-name", help="name of a model folder in requests (default: the folder's name)")
    serve.add_argument("--no-batching", action="store_true", help="run every request on its own")
    serve.add_argument(
        "--batching-parameters-file",
        help="TF Serving's batching parameters (default: batching_parameters.txt beside PATH, else built-in)",
    )
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.add_argument("--max-request-bytes", type=int, help="largest request body (default 64 MiB)")
    serve.add_argument(
        "--max-image-pixels",
        type=int,
        help="largest image (width x height) accepted, read from its header before decoding (default 40M)",
    )
    serve.set_defaults(run=cmd_serve)

    data = commands.add_parser(
        "data",
        help="build a real dataset, check a dataset, or convert it to TFRecords",
        description="Work with the data a spec describes.",
    )
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    check = data_commands.add_parser(
        "check",
        help="read and decode every row; list the bad ones",
        description="Read and decode every row of every split the spec names, "
        "with the same decoders training uses, and list each bad row with its "
        "manifest, line, column and reason (missing or zero-byte file, "
        "undecodable image, WAV that is not 16-bit PCM or has the wrong sample "
        "rate, empty or non-UTF-8 text, missing or unknown label). Exits with "
        "status 1 when there are bad rows and the spec says on_bad_record: error.",
    )
    check.add_argument("spec", help="the spec YAML file")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    check.set_defaults(run=cmd_data_check)

    build = data_commands.add_parser(
        "build",
        help="write one of the real datasets as files, manifests and a spec",
        description="Write one of the real datasets of the data folder ($MMKERAS_DATA) as "
        "manifests (CSV) and a spec.yaml that trains on them: avmnist (MNIST digits paired "
        "with spoken digits), emoji (names and pictures), flickr8k (photographs with English "
        "or Chinese captions: retrieval or captioning), ham10000 (skin-lesion pictures and "
        "patient records) or easy_vqa (questions about pictures of shapes, read from the "
        "easy-vqa package). Splits keep each recording, photograph, lesion or picture on one side. "
        "The options a dataset does not take are refused by name.",
    )
    build.add_argument("dataset", choices=BUILT_DATASETS, help="which dataset")
    build.add_argument("--output-dir", required=True, help="where the manifests and spec.yaml go")
    build.add_argument("--data-root", help="the data folder (default: $MMKERAS_DATA)")
    build.add_argument(
        "--task", help="emoji: category, subcategory or retrieval; flickr8k: retrieval or captioning"
    )
    build.add_argument("--language", choices=("en", "zh"), help="flickr8k: the captions' language")
    build.add_argument(
        "--fraction", type=float, help="keep this share of the photographs, names, lesions or pictures"
    )
    build.add_argument("--image-size", type=int, help="flickr8k, ham10000: square picture size")
    build.add_argument(
        "--shortcut",
        type=float,
        help="avmnist, emoji: add a `note` word naming the label in this share of the training rows",
    )
    build.add_argument("--seed", type=int, help="seeds the split (default 0)")
    build.set_defaults(run=cmd_data_build)

    to_tfrecord = data_commands.add_parser(
        "to-tfrecord",
        help="write each split as sharded TFRecords of raw bytes",
        description="Write every split as sharded TFRecords holding each row's "
        "text and encoded file bytes, so millions of rows are read "
        "sequentially instead of file by file, plus a spec.yaml that reads "
        "them. Bad rows are left out when the spec says on_bad_record: skip.",
    )
    to_tfrecord.add_argument("spec", help="the spec YAML file")
    to_tfrecord.add_argument("--output-dir", required=True, help="where to write the shards")
    to_tfrecord.add_argument("--num-shards", type=int, default=8, help="files per split")
    to_tfrecord.set_defaults(run=cmd_data_to_tfrecord)
    return parser


CPU_DEVICES_ENV = "MMKERAS_CPU_DEVICES"


def split_cpu():
    """Splits the CPU into N logical devices when $MMKERAS_CPU_DEVICES says so,
    so MirroredStrategy can be tried (and tested) without GPUs."""
    count = int(os.environ.get(CPU_DEVICES_ENV, "0") or 0)
    if count > 1:
        import tensorflow as tf

        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * count
        )


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    split_cpu()
    from mmkeras.errors import MMKerasError

    try:
        return args.run(args)
    except MMKerasError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())

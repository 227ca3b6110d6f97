"""The `mmkeras` command line."""

import argparse
import logging
import os
import sys

QUICKSTART_DATASETS = ("quickstart", "avmnist", "emoji")


def _load_spec(path):
    from mmkeras.spec import Spec

    return Spec.from_yaml(path)


def _summarize_batch(spec, preprocessor):
    from mmkeras.data import make_dataset

    dataset = make_dataset(spec, "train", preprocessor=preprocessor, check=False)
    inputs, target = next(iter(dataset))
    print("One batch of the training split:")
    for name, tensor in inputs.items():
        print(f"  {name:<12} {str(tuple(tensor.shape)):<20} {tensor.dtype.name}")
    print(f"  {'target':<12} {str(tuple(target.shape)):<20} {target.dtype.name}")


def _print_check(results, spec):
    total_bad = 0
    for split, records in results.items():
        rows = len({record.location for record in records})
        total_bad += rows
        print(f"{split:<11} {rows} bad row(s)")
        for record in records:
            print(f"  {record}")
    if total_bad and spec.data.on_bad_record == "skip":
        print(f"{total_bad} bad row(s) will be skipped (data.on_bad_record: skip).")
    elif total_bad:
        print(
            "Training stops on these rows (data.on_bad_record: error): fix or "
            "remove them, or set `on_bad_record: skip` in the spec."
        )
    return total_bad


def cmd_quickstart(args):
    from mmkeras.data import build_preprocessor, check_spec
    from mmkeras.datasets import build_avmnist, build_emoji, build_quickstart

    output_dir = args.output_dir or os.path.join("quickstart_data", args.dataset)
    print(f"Writing the {args.dataset} dataset to {output_dir} ...")
    if args.dataset == "quickstart":
        spec = build_quickstart(output_dir, num_rows=args.rows, seed=args.seed)
    elif args.dataset == "avmnist":
        spec = build_avmnist(output_dir, seed=args.seed)
    else:
        spec = build_emoji(output_dir, seed=args.seed)
    print(f"Spec: {os.path.join(output_dir, 'spec.yaml')}")
    results = check_spec(spec)
    if _print_check(results, spec):
        return 1
    preprocessor = build_preprocessor(spec, progress=False)
    _summarize_batch(spec, preprocessor)
    if preprocessor.target is not None:
        print(f"Labels: {', '.join(preprocessor.target.labels)}")
    return 0


def cmd_data_check(args):
    from mmkeras.data import check_spec

    spec = _load_spec(args.spec)
    bad = _print_check(check_spec(spec, progress=not args.quiet), spec)
    return 1 if bad and spec.data.on_bad_record == "error" else 0


def cmd_data_to_tfrecord(args):
    import yaml
    from tqdm.auto import tqdm

    from mmkeras.data import open_split, write_tfrecords
    from mmkeras.data.check import available_splits
    from mmkeras.data.dataset import bad_rows

    spec = _load_spec(args.spec)
    layout = spec.to_dict()
    layout["data"].pop("validation_split", None)
    for split in available_splits(spec):
        source = open_split(spec, split)
        exclude = bad_rows(spec, split)
        with tqdm(total=len(source), desc=f"writing {split}", unit="row") as bar:
            pattern = write_tfrecords(
                source,
                spec,
                os.path.join(args.output_dir, split),
                num_shards=args.num_shards,
                exclude=exclude,
                progress=bar.update,
            )
        layout["data"][split] = os.path.relpath(pattern, args.output_dir)
        print(f"{split}: {pattern}")
    for feature in layout["data"]["features"]:
        if feature.get("tokenizer"):
            feature["tokenizer"] = spec.resolve(feature["tokenizer"])
    spec_path = os.path.join(args.output_dir, "spec.yaml")
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(layout, f, sort_keys=False)
    print(f"A spec that reads these files: {spec_path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmkeras",
        description="Multimodal deep learning with Keras: text, images and audio "
        "from a CSV/JSONL manifest or TFRecords.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quickstart = commands.add_parser(
        "quickstart",
        help="generate a small dataset, check it and build its input pipeline",
        description="Generate the quickstart dataset (PNG images, WAV clips and "
        "captions whose label needs both picture and sound; no download), or "
        "build AV-MNIST / emoji from $MMKERAS_DATA, run the bad-record check "
        "on it and show one batch of the tf.data pipeline.",
    )
    quickstart.add_argument(
        "--dataset",
        choices=QUICKSTART_DATASETS,
        default="quickstart",
        help="quickstart (generated, the default), or avmnist / emoji built "
        "from the real data in $MMKERAS_DATA",
    )
    quickstart.add_argument("--output-dir", help="where to write (default quickstart_data/DATASET)")
    quickstart.add_argument("--rows", type=int, default=600, help="rows of the generated dataset")
    quickstart.add_argument("--seed", type=int, default=0, help="random seed")
    quickstart.set_defaults(run=cmd_quickstart)

    data = commands.add_parser(
        "data",
        help="check a dataset, or convert it to TFRecords",
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


def main(argv=None):
    from mmkeras.data.manifest import BadValue
    from mmkeras.errors import BadRecordError, SpecError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (SpecError, BadRecordError, BadValue) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

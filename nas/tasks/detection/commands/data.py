"""``spinenas data``: generate the shapes dataset, check a dataset, import VOC or YOLO folders."""

from __future__ import annotations

import os

from nas.arguments import UserError, add_command, non_negative_int, output_folder, positive_int

EXIT_UNUSABLE = 1


def run_shapes(args) -> int:
    """Generate the dataset and print what was written."""
    from nas.tasks.detection.shapes import write_shapes_dataset

    divisor = 2**args.max_level
    if args.image_size % divisor:
        raise UserError(f"--image-size {args.image_size}: a level-{args.max_level} genome needs sides divisible by "
                        f"2**{args.max_level} = {divisor}, e.g. {divisor}, {2 * divisor} or {4 * divisor} "
                        "(--max-level sets the genome's deepest level)")
    if os.path.exists(os.path.join(args.out, "instances_train.json")) and not args.overwrite:
        raise UserError(f"{args.out} already holds a dataset; pass --overwrite to replace it")
    output_folder(args.out)
    try:
        counts = write_shapes_dataset(args.out, train=args.train, val=args.val, image_size=args.image_size,
                                      seed=args.seed, max_objects=args.max_objects, progress=not args.quiet)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote {counts['train_images']} train images ({counts['train_objects']} objects) and "
          f"{counts['val_images']} val images ({counts['val_objects']} objects) to {args.out}")
    return 0


def run_check(args) -> int:
    """Print the dataset report; exit status 1 when the data cannot be trained on."""
    from nas.tasks.detection.check import check_dataset

    if not os.path.isdir(args.root):
        raise UserError(f"{args.root}: not a folder (expected instances_train.json, instances_val.json, train/, val/)")
    overrides = [*(args.set or ()), f"task.data.root={args.root}", "task.data.generate_shapes=null"]
    if args.image_size:
        overrides.append(f"task.data.image_size={args.image_size}")
    config = args.load_train_config(args.config, overrides)
    report = check_dataset(config.task.data, config.task.head)
    print(report)
    return 0 if report.usable else EXIT_UNUSABLE


def run_import(args) -> int:
    """Convert a VOC or YOLO folder to the COCO-format layout and print what was written."""
    from nas.tasks.base import DataError
    from nas.tasks.detection.importers import import_voc, import_yolo

    if not os.path.isdir(args.src):
        raise UserError(f"{args.src}: not a folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: is a file, not a folder")
    try:
        if args.format == "voc":
            if not 0 < args.val_fraction < 1:
                raise UserError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
            if not 0 < args.min_visible <= 1:
                raise UserError(f"--min-visible must be in (0, 1], got {args.min_visible}")
            counts = import_voc(args.src, args.out, val_fraction=args.val_fraction, seed=args.seed,
                                overwrite=args.overwrite, tile=args.tile, min_visible=args.min_visible)
        else:
            counts = import_yolo(args.src, args.out, overwrite=args.overwrite)
    except DataError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"--out {args.out}: cannot write ({err.strerror})") from None
    test = (f", {counts['test_images']} test images ({counts['test_objects']} objects) held out"
            if "test_images" in counts else "")
    print(f"wrote {counts['train_images']} train images ({counts['train_objects']} objects) and "
          f"{counts['val_images']} val images ({counts['val_objects']} objects){test} to {args.out}; "
          f"{len(counts['classes'])} classes; split from {counts['split_from']}")
    for reason, count in counts["notes"].items():
        print(f"  {count} {reason}")
    print(f"next: spinenas data check {args.out}")
    return 0


def add_parser(subparsers, *, load_train_config) -> None:
    """Register ``spinenas data``."""
    parser = subparsers.add_parser(
        "data", help="generate, check and import datasets",
        description="Datasets in the COCO-format layout task.data.root reads: instances_train.json, "
                    "instances_val.json, train/ and val/ (and a held-out instances_test.json and test/).")
    kinds = parser.add_subparsers(dest="dataset", required=True)
    shapes = add_command(kinds, "shapes", run_shapes, "generate the shapes detection dataset (COCO format)",
                         "Write the embedded shapes dataset (circles, squares, triangles and crosses on textured "
                         "backgrounds) in the COCO-format layout.")
    shapes.add_argument("--out", required=True, help="folder to write")
    shapes.add_argument("--train", type=positive_int, default=1000, help="training images (default 1000)")
    shapes.add_argument("--val", type=positive_int, default=200, help="validation images (default 200)")
    shapes.add_argument("--image-size", type=positive_int, default=256,
                        help="side of the square images, divisible by 2**max-level (default 256)")
    shapes.add_argument("--max-level", type=positive_int, default=7,
                        help="deepest level of the genomes to train on it (default 7, SpineNet)")
    shapes.add_argument("--seed", type=non_negative_int, default=0, help="random seed: same seed, same bytes (default 0)")
    shapes.add_argument("--max-objects", type=positive_int, default=6, help="objects per image, at most (default 6)")
    shapes.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")

    check = add_command(
        kinds, "check", run_check, "report what a COCO-format dataset holds and whether it can be trained on",
        "Read both splits (and the test split, if there) as training would and print images and objects per "
        "split and class, what was skipped and why, and object sizes against the smallest anchor. Exit status 1 "
        "when the data cannot be used.")
    check.add_argument("root", metavar="ROOT", help="dataset folder (instances_train.json, instances_val.json, "
                                                     "train/, val/)")
    check.add_argument("--image-size", type=positive_int, metavar="N",
                       help="training image size to judge object sizes at (default task.data.image_size, 128)")
    check.add_argument("--config", metavar="FILE", help="read task.data and task.head from this config or experiment")
    check.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. task.data.categories=[car,person] (repeatable)")
    check.set_defaults(load_train_config=load_train_config)

    importer = kinds.add_parser("import", help="convert a Pascal VOC or YOLO dataset to the COCO-format layout",
                                description="Convert a dataset folder to the COCO-format layout, then "
                                            "'spinenas data check OUT', and train or search on it with --data OUT.")
    formats = importer.add_subparsers(dest="format", required=True)
    voc = formats.add_parser("voc", help="Pascal VOC: Annotations/*.xml, JPEGImages/, ImageSets/Main/ (or XML "
                                         "files beside their images)",
                             description="Splits from ImageSets/Main/train.txt and val.txt when both exist, "
                                         "else a seeded random split; test.txt becomes the test split. Difficult "
                                         "objects become ignored regions. "
                                         "--tile cuts a few large photos (aerial scenes, say) into training-sized "
                                         "tiles.")
    yolo = formats.add_parser("yolo", help="YOLO: images/{train,val,test}/, labels/{train,val,test}/, data.yaml or "
                                           "classes.txt (test optional)",
                              description="Class names from data.yaml ('names') or classes.txt; boxes "
                                          "'class cx cy w h' normalised, polygons become their boxes.")
    for sub in (voc, yolo):
        sub.add_argument("src", metavar="SRC", help="the dataset folder to convert")
        sub.add_argument("--out", required=True, metavar="DST", help="folder to write the COCO-format dataset to")
        sub.add_argument("--overwrite", action="store_true", help="replace a dataset already in DST")
        sub.set_defaults(handler=run_import)
    voc.add_argument("--val-fraction", type=float, default=0.2,
                     help="share of images for val when ImageSets/Main has no train/val lists (default 0.2)")
    voc.add_argument("--seed", type=non_negative_int, default=0, help="seed of that split (default 0)")
    voc.add_argument("--tile", type=positive_int, metavar="N",
                     help="cut each image into non-overlapping NxN tiles, written as PNG (remainders dropped); "
                          "the random split is then over tiles")
    voc.add_argument("--min-visible", type=float, default=0.5, metavar="F",
                     help="with --tile: an object keeping this share of its box in a tile is an object there, "
                          "one cut off more an ignored region (default 0.5)")
